--- turbo_ws.evlua.ws_const -- evlua's `service_utils.WS.ws_const`: frame
-- flags, opcodes, close codes and error numbers, as plain numbers.
return {
  -- byte 1: mask bit; byte 0: FIN and RSV bits
  FRAME_FLAG_MASK = 0x80,
  FRAME_FLAG_FIN = 0x80,
  FRAME_FLAG_RSV1 = 0x40,
  FRAME_FLAG_RSV2 = 0x20,
  FRAME_FLAG_RSV3 = 0x10,

  -- opcodes
  FRAME_OP_CONT = 0x0,
  FRAME_OP_TEXT = 0x1,
  FRAME_OP_BINARY = 0x2,
  FRAME_OP_CLOSE = 0x8,
  FRAME_OP_PING = 0x9,
  FRAME_OP_PONG = 0xA,
  FRAME_OP_BITMASK = 0xF,
  FRAME_OP_SETRAW = 0x100,

  -- byte 0 of a whole (FIN) text / binary frame
  FRAME_TEXT = 0x81,
  FRAME_BINARY = 0x82,

  MAX_HEADER_LENGTH = 14,

  -- roles
  WS_SERVER = 0,
  WS_CLIENT = 1,

  -- close codes (RFC 6455 section 7.4.1)
  WS_NORMAL_CLOSE = 1000,
  WS_ENDPOINT_GOING_AWAY = 1001,
  WS_PROTOCOL_ERROR = 1002,
  WS_PAYLOAD_NOT_ACCEPTABLE = 1003,
  WS_RESERVED = 1004,
  WS_RESERVED_NO_STATUS_CODE = 1005,
  WS_RESERVED_ABNORMAL_CLOSE = 1006,
  WS_MALFORMED_PAYLOAD = 1007,
  WS_POLICY_VIOLATION = 1008,
  WS_PAYLOAD_TOO_BIG = 1009,
  WS_EXTENSION_REQUIRED = 1010,
  WS_UNEXPECTED_CONDITION = 1011,
  WS_RESERVED_TLS_FAILURE = 1015,

  -- error numbers
  WS_ERR_NO_HANDSHAKE = 1,
  WS_ERR_HANDSHAKE_NO_VERSION = 2,
  WS_ERR_HANDSHAKE_UNSUPPORTED_VERSION = 3,
  WS_ERR_HANDSHAKE_NO_KEY = 4,
  WS_ERR_HANDSHAKE_ACCEPT = 5,
  WS_ERR_UNAUTHORIZED = 6,
  WS_ERR_PAYLOAD_TOO_BIG = 10,
  WS_ERR_INCOMPLETE_FRAME = 11,

  -- evlua's accepted-socket state "to be closed"
  TO_BE_CLOSED = -1,
}
