// The chat example (examples/chat) in a real browser: Debian's Chromium,
// driven by playwright-core. Starts the server on a free port, signs in two
// users in two pages, exchanges messages both ways, checks the messages and
// the presence list on each page, closes one page and checks the other sees
// the leave. Saves build/test-logs/chat.png.
//
//   node tests/browser/chat.test.mjs        (scripts/browser-test.sh sets up)
//
// Ends with one line "browser: N passed, M failed"; exits non-zero on any
// failure. The browser only ever sees 127.0.0.1: no network.
import { spawn } from "node:child_process";
import { mkdtempSync, mkdirSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { chromium } from "playwright-core";

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), "../..");
const LOG_DIR = resolve(ROOT, process.env.LOG_DIR || "build/test-logs");
const SCREENSHOT = join(LOG_DIR, "chat.png");
const CHROMIUM = process.env.CHROMIUM || "/usr/bin/chromium";
const STEP_MS = 10_000;    // any single wait
const TOTAL_MS = 120_000;  // the whole test

let passed = 0;
let failed = 0;
function check(name, ok, detail = "") {
  if (ok) passed++; else failed++;
  console.log(`${ok ? "ok  " : "FAIL"} ${name}${!ok && detail ? ` (${detail})` : ""}`);
  return ok;
}

function finish(code) {
  console.log(`browser: ${passed} passed, ${failed} failed`);
  process.exit(code ?? (failed > 0 ? 1 : 0));
}

// Rejects after `ms` with `what` in the message.
function bounded(promise, ms, what) {
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms: ${what}`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

// --- The server -----------------------------------------------------------

let server = null;
let serverOutput = "";

function startServer() {
  server = spawn("luajit", ["examples/chat/chat.lua", "0", "127.0.0.1"], {
    cwd: ROOT,
    env: { ...process.env, LUA_CPATH: process.env.LUA_CPATH || `${ROOT}/build/?.so;;` },
    stdio: ["ignore", "pipe", "pipe"],
  });
  server.stdout.setEncoding("utf8");
  server.stderr.setEncoding("utf8");
  server.stderr.on("data", (d) => { serverOutput += d; });
  const exited = new Promise((res) => server.on("exit", (code, signal) => res({ code, signal })));
  server.exited = exited;
  return bounded(new Promise((res, reject) => {
    server.stdout.on("data", (d) => {
      serverOutput += d;
      const url = serverOutput.match(/http:\/\/127\.0\.0\.1:\d+\//);
      if (url && /graceful stop on SIGINT\/SIGTERM: (yes|no)/.test(serverOutput)) res(url[0]);
    });
    server.on("error", reject);
    exited.then(({ code }) => reject(new Error(`server exited with ${code}`)));
  }), STEP_MS, "server start");
}

// --- Page helpers -----------------------------------------------------------

const texts = (page, selector) =>
  page.locator(selector).evaluateAll((nodes) => nodes.map((n) => n.textContent));

// The nicknames in a page's presence list, without the "you" tag.
const presence = (page) =>
  page.locator("#users .user").evaluateAll((nodes) =>
    nodes.map((n) => n.firstChild.textContent));

// Waits until fn(arg) is truthy in the page; true, or false after STEP_MS.
async function until(page, fn, arg) {
  try {
    await page.waitForFunction(fn, arg, { timeout: STEP_MS, polling: 50 });
    return true;
  } catch {
    return false;
  }
}

function presenceIs(page, names) {
  return until(page, (want) => {
    const got = [...document.querySelectorAll("#users .user")].map((n) => n.firstChild.textContent);
    return JSON.stringify(got) === JSON.stringify(want)
      && document.getElementById("count").textContent === String(want.length);
  }, names);
}

function hasMessage(page, from, text) {
  return until(page, ([from, text]) =>
    [...document.querySelectorAll("#messages .message")].some((m) =>
      m.querySelector(".from")?.textContent === from
      && m.querySelector(".text")?.textContent === text
      && /\d{1,2}[:.]\d{2}/.test(m.querySelector(".time")?.textContent || "")),
  [from, text]);
}

function hasNotice(page, text) {
  return until(page, (text) =>
    [...document.querySelectorAll("#messages .notice")].some((n) => n.textContent.includes(text)),
  text);
}

async function signIn(page, url, nick) {
  await page.goto(url, { timeout: STEP_MS });
  await page.fill("#nick", nick, { timeout: STEP_MS });
  await page.click("#signin-form button", { timeout: STEP_MS });
}

// --- The test --------------------------------------------------------------

async function main() {
  const url = await startServer();
  const origin = url.replace(/\/$/, "");
  const graceful = /graceful stop on SIGINT\/SIGTERM: yes/.test(serverOutput);
  console.log(`server at ${url} (graceful stop: ${graceful ? "yes" : "no"})`);

  const profile = mkdtempSync(join(tmpdir(), "turbo-ws-chromium-"));
  let context = null;
  try {
    // A persistent context on a fresh profile directory: how playwright
    // takes --user-data-dir (launch() refuses the flag).
    context = await bounded(chromium.launchPersistentContext(profile, {
      executablePath: CHROMIUM,
      headless: true,
      timeout: STEP_MS * 3,
      viewport: { width: 1000, height: 640 },
      args: [
        "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
        "--no-first-run", "--disable-background-networking",
        "--disable-component-update", "--disable-sync",
      ],
    }), STEP_MS * 3, "chromium launch");
    check("chromium starts", true);

    // Nothing but our server: any other request is refused and counted.
    const strays = [];
    await context.route("**/*", (route) => {
      const u = route.request().url();
      if (u.startsWith(`${origin}/`) || u.startsWith("data:")) return route.continue();
      strays.push(u);
      return route.abort();
    });
    const errors = [];
    const watch = (page, name) => page.on("pageerror", (e) => errors.push(`${name}: ${e.message}`));

    // Two users sign in.
    const ada = context.pages()[0] || await context.newPage();
    watch(ada, "ada");
    await signIn(ada, url, "ada");
    check("page title", (await ada.title()) === "turbo_ws chat");
    check("ada signs in", await until(ada, () => !document.getElementById("room").hidden));
    check("ada sees herself present", await presenceIs(ada, ["ada"]));

    const grace = await context.newPage();
    watch(grace, "grace");
    await signIn(grace, url, "grace");
    check("grace signs in", await until(grace, () => !document.getElementById("room").hidden));
    check("grace sees ada and grace present", await presenceIs(grace, ["ada", "grace"]));
    check("ada sees grace join (presence)", await presenceIs(ada, ["ada", "grace"]));
    check("ada sees grace join (notice)", await hasNotice(ada, "grace joined"));

    // A nickname that is taken (case-insensitively) is refused.
    const third = await context.newPage();
    watch(third, "third");
    await signIn(third, url, "ADA");
    check("a taken nickname is refused", await until(third, () =>
      /taken/.test(document.getElementById("signin-error").textContent)
      && document.getElementById("room").hidden));
    await third.close();

    // Messages both ways; user text stays text (no HTML from it).
    const fromAda = "Hello <b>grace</b> & all";
    const fromGrace = "Hi ada! «ünïcödé» ✓";
    await ada.fill("#text", fromAda);
    await ada.press("#text", "Enter");
    check("grace gets ada's message (sender, text, time)", await hasMessage(grace, "ada", fromAda));
    check("ada sees her own message", await hasMessage(ada, "ada", fromAda));
    await grace.fill("#text", fromGrace);
    await grace.click("#say-form button");
    check("ada gets grace's message (sender, text, time)", await hasMessage(ada, "grace", fromGrace));
    check("grace sees her own message", await hasMessage(grace, "grace", fromGrace));
    check("user text is not HTML", (await ada.locator("#messages b").count()) === 0
      && (await grace.locator("#messages b").count()) === 0);
    check("own messages are marked", (await texts(ada, "#messages .message.mine .text")).join("|") === fromAda);
    check("input is cleared after sending", (await ada.inputValue("#text")) === "");

    // The server limits message length (the page's maxlength is bypassed).
    await grace.evaluate(() => socket.send(JSON.stringify({ type: "say", text: "x".repeat(600) })));
    check("an overlong message is refused", await hasNotice(grace, "at most 500 characters"));
    check("nobody receives the overlong message",
      !(await texts(ada, "#messages .text")).some((t) => t.startsWith("xxxx")));

    mkdirSync(LOG_DIR, { recursive: true });
    await ada.screenshot({ path: SCREENSHOT, timeout: STEP_MS });
    console.log(`screenshot: ${SCREENSHOT}`);

    // The limit counts characters, not bytes: 500 four-byte characters pass.
    const wide = "\u{1F600}".repeat(500);
    await grace.evaluate((text) => socket.send(JSON.stringify({ type: "say", text })), wide);
    check("500 non-BMP characters are accepted", await hasMessage(ada, "grace", wide));

    // One user leaves: the other's presence list follows.
    await grace.close();
    check("ada sees grace leave (presence)", await presenceIs(ada, ["ada"]));
    check("ada sees grace leave (notice)", await hasNotice(ada, "grace left"));

    check("no page errors", errors.length === 0, errors.join("; "));
    check("no request left 127.0.0.1", strays.length === 0, strays.join(" "));

    // Graceful stop: SIGTERM closes the browsers' sockets with 1001, exit 0.
    if (graceful) {
      server.kill("SIGTERM");
      const { code, signal } = await bounded(server.exited, STEP_MS, "server exit after SIGTERM")
        .catch(() => ({ code: null, signal: "timeout" }));
      check("server exits with 0 on SIGTERM", code === 0, `code ${code}, signal ${signal}`);
      check("the page is closed with 1001", await until(ada, () =>
        document.getElementById("status").dataset.closeCode === "1001"));
    } else {
      console.log("skip graceful-stop checks: turbo_ws.on_signal is not available yet");
    }
  } finally {
    if (context) await bounded(context.close(), STEP_MS, "browser close").catch(() => {});
    rmSync(profile, { recursive: true, force: true });
  }
}

const deadline = setTimeout(() => {
  check("whole test within " + TOTAL_MS / 1000 + " s", false);
  if (server) server.kill("SIGKILL");
  finish(1);
}, TOTAL_MS);

try {
  await main();
} catch (e) {
  check("test ran to the end", false, e.message.split("\n")[0]);
} finally {
  clearTimeout(deadline);
  if (server && server.exitCode === null && server.signalCode === null) {
    server.kill("SIGKILL");
  }
  if (failed > 0 && serverOutput) console.log("--- server output\n" + serverOutput.trimEnd());
}
finish();
