"""The chat page `xib serve` answers at `/`: one self-contained HTML file (no network assets).

Files are read in the browser into base64 parts of the OpenAI request (image -> image_url data URL,
.wav/.flac -> input_audio, .mp4 -> input_video, .npy -> input_point_cloud); the answer streams in
from `/v1/chat/completions` with `stream: true`. The conversation is kept for follow-up questions.
"""

CHAT_PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>xib chat</title>
<style>
  body { font-family: system-ui, sans-serif; max-width: 46rem; margin: 1.5rem auto; padding: 0 1rem; color: #222; }
  h1 { font-size: 1.3rem; margin-bottom: .2rem; }
  #status { color: #666; font-size: .9rem; margin-bottom: 1rem; }
  #log { border: 1px solid #ddd; border-radius: 6px; padding: .6rem; min-height: 8rem; margin-bottom: .8rem; }
  .turn { margin: .4rem 0; white-space: pre-wrap; }
  .user { color: #114; } .assistant { color: #141; } .error { color: #a00; }
  .files { color: #666; font-size: .85rem; }
  form { display: grid; gap: .5rem; }
  textarea { width: 100%; min-height: 3.5rem; font: inherit; }
  .row { display: flex; gap: .5rem; align-items: center; flex-wrap: wrap; }
  button { font: inherit; padding: .3rem 1rem; }
  #token { flex: 1; min-width: 10rem; }
</style>
</head>
<body>
<h1>Ask the model</h1>
<div id="status">checking the server...</div>
<div id="log" aria-live="polite"></div>
<form id="form">
  <textarea id="question" placeholder="Ask about the attached image, audio, video or 3D point cloud"></textarea>
  <div class="row">
    <input id="files" type="file" multiple accept="image/*,.wav,.flac,.mp4,.npy">
    <button id="send" type="submit">Send</button>
    <button id="reset" type="button">New chat</button>
  </div>
  <div class="row"><input id="token" type="password" placeholder="bearer token (only if the server asks)"></div>
</form>
<script>
"use strict";
const log = document.getElementById("log");
const statusEl = document.getElementById("status");
let history = [];
let modelName = "xib";

function line(cls, text) {
  const div = document.createElement("div");
  div.className = "turn " + cls;
  div.textContent = text;
  log.appendChild(div);
  return div;
}

function headers() {
  const h = {"Content-Type": "application/json"};
  const t = document.getElementById("token").value.trim();
  if (t) h["Authorization"] = "Bearer " + t;
  return h;
}

async function health() {
  try {
    const r = await fetch("/health");
    const j = await r.json();
    if (r.ok) { modelName = j.model; statusEl.textContent = j.model + " version " + j.version + " (" + j.ref + ")"; }
    else { statusEl.textContent = "model " + j.status + (j.error ? ": " + j.error : ""); setTimeout(health, 2000); }
  } catch (e) { statusEl.textContent = "server unreachable"; }
}

function readFile(file) {
  return new Promise((resolve, reject) => {
    const reader = new FileReader();
    reader.onload = () => resolve(reader.result);
    reader.onerror = () => reject(reader.error);
    reader.readAsDataURL(file);
  });
}

async function part(file) {
  const url = await readFile(file);
  const data = url.slice(url.indexOf(",") + 1);
  const name = file.name.toLowerCase();
  const ext = name.slice(name.lastIndexOf(".") + 1);
  if (ext === "wav" || ext === "flac") return {type: "input_audio", input_audio: {data: data, format: ext}};
  if (ext === "mp4") return {type: "input_video", input_video: {data: data, format: "mp4"}};
  if (ext === "npy") return {type: "input_point_cloud", input_point_cloud: {data: data, format: "npy"}};
  const mime = file.type && file.type.startsWith("image/") ? file.type : "image/png";
  return {type: "image_url", image_url: {url: "data:" + mime + ";base64," + data}};
}

async function send(event) {
  event.preventDefault();
  const q = document.getElementById("question").value.trim();
  const files = Array.from(document.getElementById("files").files);
  if (!q) return;
  const content = [];
  for (const f of files) content.push(await part(f));
  content.push({type: "text", text: q});
  line("user", "you: " + q);
  if (files.length) line("files", "attached: " + files.map(f => f.name).join(", "));
  const answer = line("assistant", "");
  answer.id = "answer-" + history.length;
  const messages = history.concat([{role: "user", content: content}]);
  document.getElementById("send").disabled = true;
  let text = "";
  try {
    const r = await fetch("/v1/chat/completions", {method: "POST", headers: headers(),
      body: JSON.stringify({model: modelName, messages: messages, stream: true})});
    if (!r.ok) {
      const j = await r.json().catch(() => ({error: {message: r.statusText}}));
      throw new Error(r.status + ": " + j.error.message);
    }
    const reader = r.body.getReader();
    const decoder = new TextDecoder();
    let buffer = "";
    while (true) {
      const {value, done} = await reader.read();
      if (done) break;
      buffer += decoder.decode(value, {stream: true});
      let cut;
      while ((cut = buffer.indexOf("\\n\\n")) >= 0) {
        const event = buffer.slice(0, cut); buffer = buffer.slice(cut + 2);
        if (!event.startsWith("data: ")) continue;
        const payload = event.slice(6);
        if (payload === "[DONE]") continue;
        const j = JSON.parse(payload);
        if (j.error) throw new Error(j.error.message);
        for (const c of j.choices) if (c.index === 0 && c.delta && c.delta.content) {
          text += c.delta.content; answer.textContent = text;
        }
      }
    }
    answer.dataset.done = "true";
    history = messages.concat([{role: "assistant", content: text}]);
    document.getElementById("question").value = "";
    document.getElementById("files").value = "";
  } catch (e) {
    answer.className = "turn error"; answer.textContent = String(e.message || e); answer.dataset.done = "error";
  } finally {
    document.getElementById("send").disabled = false;
  }
}

document.getElementById("form").addEventListener("submit", send);
document.getElementById("reset").addEventListener("click", () => { history = []; log.textContent = ""; });
health();
</script>
</body>
</html>
"""
