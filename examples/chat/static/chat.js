// The chat page: one WebSocket to /ws on the same server, JSON messages
// (see chat.lua). User text is only ever put into the page as text
// (textContent), never as HTML.
"use strict";

const $ = (id) => document.getElementById(id);
const statusLine = $("status");
let socket = null;
let me = null;

function setStatus(state, text) {
  statusLine.dataset.state = state;
  statusLine.textContent = text;
}

// An element with optional class and text content.
function el(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

function clock(ms) {
  return new Date(ms).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
}

function append(item) {
  const list = $("messages");
  const atBottom = list.scrollHeight - list.scrollTop - list.clientHeight < 40;
  list.append(item);
  if (atBottom) list.scrollTop = list.scrollHeight;
}

function showMessage(m) {
  const item = el("li", m.from === me ? "message mine" : "message");
  const meta = el("div", "meta");
  meta.append(el("span", "from", m.from), el("time", "time", clock(m.time)));
  meta.lastChild.dateTime = new Date(m.time).toISOString();
  item.append(meta, el("div", "text", m.text));
  append(item);
}

function showNotice(text, time) {
  const item = el("li", "notice");
  item.append(el("span", null, text));
  if (time) item.append(el("time", "time", clock(time)));
  append(item);
}

function showUsers(users) {
  const list = $("users");
  list.replaceChildren(...users.map((nick) => {
    const item = el("li", nick === me ? "user me" : "user", nick);
    if (nick === me) item.append(el("span", "you", "you"));
    return item;
  }));
  $("count").textContent = String(users.length);
}

const handlers = {
  welcome(m) {
    me = m.nick;
    $("signin").hidden = true;
    $("room").hidden = false;
    setStatus("online", `Signed in as ${me}`);
    m.history.forEach(showMessage);
    showUsers(m.users);
    $("text").focus();
  },
  join(m) {
    if (!me) return;
    showUsers(m.users);
    showNotice(m.nick === me ? "You joined the room" : `${m.nick} joined`, m.time);
  },
  leave(m) {
    if (!me) return;
    showUsers(m.users);
    showNotice(`${m.nick} left`, m.time);
  },
  message(m) {
    if (me) showMessage(m);
  },
  error(m) {
    if (me) return showNotice(m.text);
    $("signin-error").textContent = m.text;
    setStatus("connecting", "Connected, not signed in");
  },
};

function closeText(code) {
  if (code === 1001) return "the server is going away";
  if (code === 1006) return "the connection was lost";
  return `code ${code}`;
}

function connect(nick) {
  const scheme = location.protocol === "https:" ? "wss:" : "ws:";
  socket = new WebSocket(`${scheme}//${location.host}/ws`);
  setStatus("connecting", "Connecting…");
  socket.onopen = () => {
    setStatus("connecting", "Signing in…");
    socket.send(JSON.stringify({ type: "join", nick }));
  };
  socket.onmessage = (event) => {
    let m;
    try { m = JSON.parse(event.data); } catch { return; }
    const handle = handlers[m && m.type];
    if (handle) handle(m);
  };
  socket.onclose = (event) => {
    statusLine.dataset.closeCode = String(event.code);
    setStatus("offline", `Disconnected: ${closeText(event.code)}`);
    socket = null;
    if (me) {
      showNotice(`Disconnected: ${closeText(event.code)}. Reload the page to join again.`);
      $("text").disabled = true;
      $("say-form").querySelector("button").disabled = true;
    }
  };
}

$("signin-form").addEventListener("submit", (event) => {
  event.preventDefault();
  const nick = $("nick").value.trim();
  $("signin-error").textContent = "";
  if (!nick) return;
  if (socket && socket.readyState === WebSocket.OPEN) {
    socket.send(JSON.stringify({ type: "join", nick })); // another try
  } else if (!socket) {
    connect(nick);
  }
});

$("say-form").addEventListener("submit", (event) => {
  event.preventDefault();
  const text = $("text").value.trim();
  if (!text || !socket || socket.readyState !== WebSocket.OPEN) return;
  socket.send(JSON.stringify({ type: "say", text }));
  $("text").value = "";
});
