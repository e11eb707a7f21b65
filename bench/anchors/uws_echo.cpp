// Bench anchor: the uWebSockets (C++) echo server, built by build_uws.sh.
//
// Settings are those an echo benchmark needs, not uWS's defaults: with the
// default 64 KiB maxBackpressure, send() silently drops echoes once a
// pipelined client gets ahead, so the limit is off (0 = unlimited); idle
// timeout and automatic pings are off because the load generator never pings;
// compression is off like every other server in the benchmark.
#include "App.h"

#include <cstdio>
#include <cstdlib>

int main(int argc, char **argv) {
    if (argc < 2) {
        std::fprintf(stderr, "usage: uws_echo PORT\n");
        return 2;
    }
    int port = std::atoi(argv[1]);
    struct PerSocketData {};
    uWS::App().ws<PerSocketData>("/*", {
        .compression = uWS::DISABLED,
        .maxPayloadLength = 64 * 1024 * 1024,
        .idleTimeout = 0,
        .maxBackpressure = 0,
        .closeOnBackpressureLimit = false,
        .resetIdleTimeoutOnSend = false,
        .sendPingsAutomatically = false,
        .message = [](auto *ws, std::string_view message, uWS::OpCode opCode) {
            ws->send(message, opCode, false);
        },
    }).listen("127.0.0.1", port, [port](auto *listen_socket) {
        if (!listen_socket) {
            std::fprintf(stderr, "uws_echo: cannot listen on 127.0.0.1:%d\n", port);
            std::exit(1);
        }
    }).run();
    return 0;
}
