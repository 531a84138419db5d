// textseq serve: the page's logic. Plain JavaScript, no build step, no network beyond this server.
"use strict";

const $ = (id) => document.getElementById(id);
const VISIBLE = {"\n": "⏎", " ": "␣", "\t": "⇥", "</s>": "</s> (end of line)"};
const DEBOUNCE_MS = 150;
let info = null;

async function api(endpoint, body, signal) {
  const init = body === undefined ? {signal} : {
    method: "POST", headers: {"Content-Type": "application/json"}, body: JSON.stringify(body), signal};
  const response = await fetch("api/" + endpoint, init);
  let data;
  try {
    data = await response.json();
  } catch (_) {
    throw new Error(`the server answered ${response.status} without JSON`);
  }
  if (!response.ok) throw new Error(data.error || `the server answered ${response.status}`);
  return data;
}

function showError(message) {
  $("error").textContent = message || "";
  $("error").hidden = !message;
}

// Numbers from optional inputs: undefined when empty, so the server's default applies.
function numberFrom(id) {
  const value = $(id).value.trim();
  return value === "" ? undefined : Number(value);
}

// ---- language models: next words as you type ----

let inFlight = null;
let debounce = null;

function schedulePredict() {
  clearTimeout(debounce);
  debounce = setTimeout(predictNow, DEBOUNCE_MS);
}

async function predictNow() {
  clearTimeout(debounce);
  if (inFlight) inFlight.abort();  // a stale request's answer must never overwrite a newer one
  const controller = inFlight = new AbortController();
  const text = $("lm-text").value;
  try {
    const data = await api("predict", {text, suggestions: 5}, controller.signal);
    if (controller !== inFlight) return;
    renderPredictions(data);
    showError("");
  } catch (error) {
    if (error.name !== "AbortError") showError(error.message);
  }
}

function renderPredictions(data) {
  const list = $("predictions");
  list.replaceChildren(...data.predictions.map(({token, probability}) => {
    const item = document.createElement("li");
    item.dataset.token = token;
    item.dataset.probability = String(probability);
    const button = document.createElement("button");
    button.type = "button";
    button.className = "token" + (token === "<unk>" ? " unknown-token" : "");
    button.textContent = VISIBLE[token] || token;
    button.title = `add "${token}"`;
    button.addEventListener("click", () => appendToken(token));
    const bar = document.createElement("span");
    bar.className = "bar";
    bar.style.width = `${Math.max(1, Math.round(probability * 100))}%`;
    const percent = document.createElement("span");
    percent.className = "percent";
    percent.textContent = `${(probability * 100).toFixed(1)}%`;
    const track = document.createElement("span");
    track.className = "track";
    track.append(bar);
    item.append(button, track, percent);
    return item;
  }));
  list.dataset.text = data.text;  // which text these predictions are for (tests wait on it)
  const unknown = $("lm-unknown");
  unknown.hidden = data.unknown.length === 0;
  unknown.textContent = data.unknown.length ? `unknown to the model (read as <unk>): ${data.unknown.join(", ")}` : "";
}

function joined(text, addition) {
  if (info.level === "char" || text === "" || /\s$/.test(text)) return text + addition;
  return text + " " + addition;
}

function appendToken(token) {
  const box = $("lm-text");
  box.value = token === "</s>" ? box.value + "\n" : joined(box.value, token);
  box.focus();
  predictNow();
}

async function continueText() {
  const button = $("continue");
  const text = $("lm-text").value;
  const request = {text, max_tokens: numberFrom("gen-max-tokens"), temperature: numberFrom("gen-temperature"),
                   top_k: numberFrom("gen-top-k"), top_p: numberFrom("gen-top-p"), seed: numberFrom("gen-seed")};
  button.disabled = true;
  button.textContent = "Writing…";
  try {
    const data = await api("generate", request);
    $("lm-text").value = info.level === "sentencepiece"  // its text carries its own spaces
      ? (text === "" || /\s$/.test(text) ? text + data.continuation.trimStart() : text + data.continuation)
      : joined(text, data.continuation);
    $("lm-text").dataset.continuation = data.continuation;
    showError("");
    predictNow();
  } catch (error) {
    showError(error.message);
  } finally {
    button.disabled = false;
    button.textContent = "Continue";
  }
}

// ---- translation runs: the translation and its attention ----

async function translateNow() {
  const request = {text: $("source").value, beam_size: numberFrom("beam_size")};
  const button = $("translate");
  button.disabled = true;
  try {
    const data = await api("translate", request);
    $("target").textContent = data.translation;
    $("target").dataset.source = data.source;
    $("hypotheses").replaceChildren(...(data.hypotheses.length > 1 ? data.hypotheses : []).map((h) => {
      const item = document.createElement("li");
      item.textContent = `${h.score.toFixed(3)}  ${h.text}`;
      return item;
    }));
    drawHeatmap(data.attention);
    showError("");
  } catch (error) {
    showError(error.message);
  } finally {
    button.disabled = false;
  }
}

function drawHeatmap({source_tokens: columns, output_tokens: rows, weights}) {
  const figure = $("attention");
  figure.hidden = rows.length === 0 || columns.length === 0;
  if (figure.hidden) return;
  const canvas = $("heatmap");
  const context = canvas.getContext("2d");
  const cell = 28;
  context.font = "13px system-ui, sans-serif";
  const width = (tokens) => Math.max(...tokens.map((t) => context.measureText(t).width)) + 10;
  const left = width(rows);
  const top = width(columns);
  const scale = window.devicePixelRatio || 1;
  canvas.width = (left + columns.length * cell + 4) * scale;
  canvas.height = (top + rows.length * cell + 4) * scale;
  canvas.style.width = `${canvas.width / scale}px`;
  canvas.style.height = `${canvas.height / scale}px`;
  context.scale(scale, scale);
  context.font = "13px system-ui, sans-serif";
  context.fillStyle = "#fff";
  context.fillRect(0, 0, canvas.width, canvas.height);
  rows.forEach((_, r) => columns.forEach((_, c) => {
    const shade = Math.round(255 * (1 - weights[r][c]));
    context.fillStyle = `rgb(${shade}, ${shade}, 255)`;
    context.fillRect(left + c * cell, top + r * cell, cell - 1, cell - 1);
  }));
  context.fillStyle = "#222";
  context.textBaseline = "middle";
  context.textAlign = "right";
  rows.forEach((token, r) => context.fillText(token, left - 6, top + r * cell + cell / 2));
  columns.forEach((token, c) => {
    context.save();
    context.translate(left + c * cell + cell / 2, top - 6);
    context.rotate(-Math.PI / 2);
    context.textAlign = "left";
    context.fillText(token, 0, 0);
    context.restore();
  });
  canvas.dataset.rows = rows.length;
  canvas.dataset.columns = columns.length;
}

// ---- start ----

async function start() {
  try {
    info = await api("info");
  } catch (error) {
    showError(`cannot read the run: ${error.message}`);
    return;
  }
  $("run-info").textContent = `${info.run} · ${info.task === "language_model" ? "language model" : "translation"}` +
    ` · ${info.level} level · vocabulary ${info.target_vocab_size.toLocaleString()}`;
  document.title = `textseq · ${info.run}`;
  if (info.task === "language_model") {
    $("language-model").hidden = false;
    $("lm-text").addEventListener("input", schedulePredict);
    $("continue").addEventListener("click", continueText);
    $("lm-text").focus();
    predictNow();
  } else {
    $("translation").hidden = false;
    $("translate").addEventListener("click", translateNow);
    $("source").addEventListener("keydown", (event) => {
      if (event.key === "Enter" && (event.ctrlKey || event.metaKey)) translateNow();
    });
    $("source").focus();
  }
}

start();
