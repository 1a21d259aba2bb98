// Flowkernel's web board: pipelines, their boards and items, through the HTTP API.
// Every change goes through the API with the signed-in token; nothing is loaded from elsewhere.
"use strict";

const TOKEN = "flowkernel.token";
const state = { view: null, pipeline: null, board: null, me: null, panelItem: null, returnFocus: null };

// --- small helpers --------------------------------------------------------------------------

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value === null || value === undefined || value === false) continue;
    if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else if (key === "style") Object.assign(node.style, value);
    else if (key === "dataset") Object.assign(node.dataset, value);
    else node.setAttribute(key, value === true ? "" : value);
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

class ApiError extends Error {
  constructor(status, body) {
    const error = (body && body.error) || {};
    super(error.message || `the server answered ${status}`);
    this.status = status;
    this.code = error.code || "http_" + status;
    this.details = error.details || {};
  }
}

async function api(method, path, body) {
  const headers = { Authorization: "Bearer " + (sessionStorage.getItem(TOKEN) || "") };
  const init = { method, headers };
  if (body !== undefined) {
    headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  const answer = await fetch(path, init);
  if (answer.status === 204) return null;
  const data = await answer.json().catch(() => null);
  if (!answer.ok) throw new ApiError(answer.status, data);
  return data;
}

function say(text) {
  const status = document.getElementById("status");
  status.textContent = text;
  status.classList.add("shown");
  clearTimeout(say.timer);
  say.timer = setTimeout(() => status.classList.remove("shown"), 2500);
}

function number(value) {
  if (value === null || value === undefined) return "";
  const parsed = Number(value);
  return Number.isFinite(parsed) ? parsed.toLocaleString() : String(value);
}

function when(text) {
  return text ? new Date(text).toLocaleString() : "";
}

function items(count) {
  return `${count} item${count === 1 ? "" : "s"}`;
}

function objectName(thing) {
  return `${thing.object_type} ${thing.object_key || thing.object_id}`;
}

// --- dialogs --------------------------------------------------------------------------------

function openDialog(title, body, actions) {
  const dialog = document.getElementById("dialog");
  dialog.replaceChildren(
    el("h2", { id: "dialog-title" }, title),
    body,
    el("div", { class: "actions" }, actions),
  );
  if (!dialog.open) dialog.showModal();
  const first = dialog.querySelector("input, select, button.primary, button");
  if (first) first.focus();
  return dialog;
}

function closeDialog() {
  const dialog = document.getElementById("dialog");
  if (dialog.open) dialog.close();
}

function showError(err, title = "Refused") {
  openDialog(title, el("p", { class: "error", "data-code": err.code }, err.message), [
    el("button", { type: "button", class: "primary", onclick: closeDialog }, "Close"),
  ]);
}

// An input for a column of `field_type`, filled with `value` (the stored text).
function fieldInput(column, value) {
  const id = "field-" + column.name;
  const kind = column.field_type;
  let input;
  if (kind === "select" || kind === "boolean") {
    const options = kind === "boolean" ? ["true", "false"] : column.options || [];
    input = el("select", { id, name: column.name },
      el("option", { value: "" }, "(none)"),
      options.map((o) => el("option", { value: o, selected: o === value }, o)));
  } else {
    const type = { number: "number", date: "date" }[kind] || "text";
    input = el("input", { id, name: column.name, type, value: value ?? "", step: kind === "number" ? "any" : null });
    if (kind === "multi_select") input.placeholder = (column.options || []).join(", ");
  }
  input.dataset.fieldType = kind;
  return el("div", { class: "field" }, el("label", { for: id }, column.label || column.name), input);
}

// The JSON value an input holds for its field type; undefined when it is empty.
function fieldValue(input) {
  const text = input.value.trim();
  if (text === "") return undefined;
  switch (input.dataset.fieldType) {
    case "number": return Number(text);
    case "boolean": return text === "true";
    case "multi_select": return text.split(",").map((s) => s.trim()).filter(Boolean);
    case "json": try { return JSON.parse(text); } catch { return text; }
    default: return text;
  }
}

// --- signing in -----------------------------------------------------------------------------

function showSignIn(message) {
  document.getElementById("sign-out").hidden = true;
  document.getElementById("who").textContent = "";
  document.getElementById("crumbs").replaceChildren();
  const input = el("input", { id: "token", type: "password", autocomplete: "off", required: true });
  const form = el("form", { class: "signin", onsubmit: async (event) => {
    event.preventDefault();
    sessionStorage.setItem(TOKEN, input.value.trim());
    await route();
  } },
    el("h1", {}, "Sign in"),
    el("label", { for: "token" }, "API token (from flowkernel token create)"),
    input,
    message ? el("p", { class: "error", role: "alert" }, message) : null,
    el("button", { type: "submit", class: "primary" }, "Sign in"));
  document.getElementById("view").replaceChildren(form);
  input.focus();
}

async function signedIn() {
  if (!sessionStorage.getItem(TOKEN)) return false;
  try {
    state.me = await api("GET", "/v1/me");
  } catch (err) {
    sessionStorage.removeItem(TOKEN);
    showSignIn(err.status === 401 ? "That token was not accepted." : err.message);
    return null;
  }
  const me = state.me;
  document.getElementById("who").textContent = me.is_system
    ? `system${me.account_id ? " of account " + me.account_id : ""}`
    : `user ${me.user_id} of account ${me.account_id}`;
  document.getElementById("sign-out").hidden = false;
  return true;
}

// --- the list of pipelines ------------------------------------------------------------------

async function showHome() {
  document.getElementById("crumbs").replaceChildren();
  const [pipelines, classes] = await Promise.all([
    api("GET", "/v1/pipelines?templates=false"),
    api("GET", "/v1/classes"),
  ]);
  const kernel = classes.filter((c) => c.movement === "explicit" && !c.is_abstract);
  const view = document.getElementById("view");
  view.replaceChildren(
    el("h1", {}, "Pipelines"),
    pipelines.length
      ? el("ul", { class: "list", id: "pipelines" }, pipelines.map((p) =>
          el("li", {}, el("a", { href: `#/pipelines/${p.id}`, "data-pipeline": p.id },
            el("strong", {}, p.name), ` · ${p.stages.length} stages`))))
      : el("p", {}, "No pipeline to show: create one with flowkernel pipeline create."),
    kernel.length ? el("h1", {}, "Classes") : "",
    kernel.length
      ? el("ul", { class: "list", id: "classes" }, kernel.map((c) =>
          el("li", {}, el("a", { href: `#/classes/${encodeURIComponent(c.code)}`, "data-class": c.code },
            el("strong", {}, c.label), ` · ${c.code}`))))
      : "",
  );
  view.focus();
}

// --- the board ------------------------------------------------------------------------------

// A pipeline's board (`kind` "pipeline", `ref` its id) or a kernel class's items by state
// (`kind` "class", `ref` its code): the same columns; only a pipeline's cards move by dragging.
async function showBoard(kind, ref, focusItem) {
  let title;
  let board;
  if (kind === "pipeline") {
    const [pipeline, found] = await Promise.all([
      api("GET", `/v1/pipelines/${ref}`),
      api("GET", `/v1/pipelines/${ref}/board`),
    ]);
    state.pipeline = pipeline;
    title = pipeline.name;
    board = found;
  } else {
    const [info, found] = await Promise.all([
      api("GET", `/v1/classes/${encodeURIComponent(ref)}`),
      api("GET", `/v1/classes/${encodeURIComponent(ref)}/board`),
    ]);
    state.pipeline = null;
    title = info.label;
    board = found;
  }
  state.view = { kind, ref };
  state.board = board;
  document.getElementById("crumbs").replaceChildren(el("a", { href: "#/" }, "Home"), " / ", title);
  const totals = [items(board.count)];
  if (board.value_column) {
    totals.push(`${board.value_column}: ${number(board.value_sum)}`);
    totals.push(`weighted: ${number(board.weighted_value)}`);
  }
  const hint = kind === "pipeline"
    ? "Drag a card to another stage, or focus it and press ← or →; Enter opens it."
    : "Enter on a card opens it, with the methods you may run.";
  const diagram = el("section", { id: "diagram", hidden: true, "aria-label": "diagram" });
  const view = document.getElementById("view");
  view.replaceChildren(
    el("div", { class: "toolbar" },
      el("h1", {}, title),
      el("span", { id: "board-totals" }, totals.join(" · ")),
      el("button", { type: "button", id: "show-diagram", "aria-expanded": "false",
        onclick: (event) => toggleDiagram(event.currentTarget, diagram, board.pipeline_id) }, "Diagram"),
      el("span", { class: "hint" }, hint)),
    diagram,
    el("div", { class: "board", id: "board" }, board.stages.map(stageColumn)),
  );
  if (focusItem) {
    const card = view.querySelector(`.card[data-item="${focusItem}"]`);
    if (card) card.focus();
  }
}

// The class drawn by the server with live counts: SVG through Graphviz, else Mermaid text.
async function toggleDiagram(button, section, classId) {
  const opening = section.hidden;
  section.hidden = !opening;
  button.setAttribute("aria-expanded", String(opening));
  if (!opening) return;
  const headers = { Authorization: "Bearer " + (sessionStorage.getItem(TOKEN) || "") };
  const base = `/v1/classes/${classId}/diagram?counts=true`;
  const svg = await fetch(`${base}&format=svg`, { headers });
  if (svg.ok) {
    const url = URL.createObjectURL(await svg.blob());
    section.replaceChildren(el("img", { src: url, alt: "the class's states and transitions, with item counts", id: "diagram-image" }));
    return;
  }
  const text = await fetch(`${base}&format=mermaid`, { headers });
  section.replaceChildren(
    el("p", { class: "hint" }, "Graphviz is not installed on the server; the drawing as Mermaid:"),
    el("pre", {}, text.ok ? await text.text() : `the server answered ${text.status}`));
}

async function reloadBoard(focusItem) {
  if (state.view) await showBoard(state.view.kind, state.view.ref, focusItem);
}

function stageColumn(stage) {
  const parts = [items(stage.count)];
  if (state.board.value_column) parts.push(number(stage.value_sum));
  if (stage.weighted_value !== null && stage.weighted_value !== undefined) parts.push(`weighted ${number(stage.weighted_value)}`);
  const cards = el("ul", { class: "cards", "aria-label": stage.name }, stage.items.map((item) => card(item, stage)));
  const column = el("section", {
    class: "stage",
    dataset: { stage: stage.code },
    style: { borderTopColor: /^#[0-9a-fA-F]{3,8}$/.test(stage.color || "") ? stage.color : "" },
    "aria-label": `stage ${stage.name}`,
  },
    el("h2", {}, stage.name, stage.is_won ? " ✓" : "", stage.is_lost ? " ✗" : "",
      stage.probability !== null ? el("span", { class: "hint" }, ` ${stage.probability}%`) : null),
    el("div", { class: "totals" }, parts.join(" · ")),
    cards);
  if (stage.next_cursor) column.append(moreButton(stage, cards, stage.next_cursor));
  return column;
}

function moreButton(stage, cards, cursor) {
  const button = el("button", { type: "button", class: "more", onclick: async () => {
    const page = state.view.kind === "pipeline"
      ? await api("GET", `/v1/pipelines/${state.view.ref}/stages/${stage.code}/items?cursor=${encodeURIComponent(cursor)}`)
      : await api("GET", `/v1/classes/${encodeURIComponent(state.view.ref)}/board?cursor=${encodeURIComponent(`${stage.id}:${cursor}`)}`)
        .then((b) => b.stages.find((s) => s.id === stage.id) || { items: [], next_cursor: null });
    cards.append(...page.items.map((item) => card(item, stage)));
    button.replaceWith(page.next_cursor ? moreButton(stage, cards, page.next_cursor) : "");
  } }, "More");
  return button;
}

function card(item, stage) {
  const breached = Boolean(item.sla_breached_at);
  const node = el("li", {
    class: "card" + (breached ? " breached" : ""),
    tabindex: 0,
    dataset: { item: item.id, stage: stage.code },
    "aria-label": `${objectName(item)} in ${stage.name}${breached ? ", SLA breached" : ""}`,
  },
    item.value !== null ? el("span", { class: "value" }, number(item.value)) : null,
    el("span", {}, objectName(item)),
    breached ? el("span", { class: "badge", title: `breached ${when(item.sla_breached_at)}` }, "SLA breached") : null,
    el("div", { class: "hint" }, `#${item.id}`, item.assigned_user_id ? ` · user ${item.assigned_user_id}` : ""));
  node.addEventListener("keydown", (event) => onCardKey(event, item.id, stage.code));
  if (state.view.kind === "pipeline") node.addEventListener("pointerdown", (event) => startDrag(event, node));
  else node.addEventListener("click", () => openItem(item.id, node));
  return node;
}

function onCardKey(event, itemId, stageCode) {
  const codes = state.board.stages.map((s) => s.code);
  const at = codes.indexOf(stageCode);
  if (event.key === "Enter" || event.key === " ") {
    event.preventDefault();
    openItem(itemId, event.currentTarget);
  } else if (state.view.kind !== "pipeline") {
    return;
  } else if (event.key === "ArrowRight" && at < codes.length - 1) {
    event.preventDefault();
    moveItem(itemId, codes[at + 1]);
  } else if (event.key === "ArrowLeft" && at > 0) {
    event.preventDefault();
    moveItem(itemId, codes[at - 1]);
  }
}

// Dragging by pointer events (mouse, pen and touch alike).
function startDrag(event, node) {
  if (event.button !== 0) return;
  const start = { x: event.clientX, y: event.clientY };
  let dragging = false;
  let over = null;
  const stageAt = (x, y) => {
    const found = document.elementFromPoint(x, y);
    return found ? found.closest(".stage") : null;
  };
  const moved = (e) => {
    if (!dragging && Math.hypot(e.clientX - start.x, e.clientY - start.y) > 5) {
      dragging = true;
      node.classList.add("dragging");
    }
    if (!dragging) return;
    const stage = stageAt(e.clientX, e.clientY);
    if (stage !== over) {
      if (over) over.classList.remove("target");
      over = stage;
      if (over) over.classList.add("target");
    }
  };
  const ended = (e) => {
    document.removeEventListener("pointermove", moved);
    document.removeEventListener("pointerup", ended);
    node.classList.remove("dragging");
    if (over) over.classList.remove("target");
    if (!dragging) {
      openItem(Number(node.dataset.item), node);
      return;
    }
    const stage = stageAt(e.clientX, e.clientY);
    if (stage && stage.dataset.stage !== node.dataset.stage) moveItem(Number(node.dataset.item), stage.dataset.stage);
  };
  document.addEventListener("pointermove", moved);
  document.addEventListener("pointerup", ended);
}

async function moveItem(itemId, stageCode) {
  const stage = state.board.stages.find((s) => s.code === stageCode);
  try {
    await api("POST", `/v1/items/${itemId}/move`, { stage: stageCode });
  } catch (err) {
    await refused(itemId, stageCode, err);
    return;
  }
  closeDialog();
  say(`Moved #${itemId} to ${stage ? stage.name : stageCode}`);
  await reloadBoard(itemId);
  if (state.panelItem === itemId) await openItem(itemId);
}

// A refused move: the reasons, and for missing required values a form to fill them in place.
async function refused(itemId, stageCode, err) {
  if (err.code === "stage_requirement_missing") {
    const columns = state.pipeline.columns;
    const fields = (err.details.missing || []).map((m) =>
      fieldInput(columns.find((c) => c.name === m.column) || { name: m.column, label: m.label, field_type: "text" }, ""));
    const problem = el("p", { class: "error", role: "alert" });
    const form = el("form", { id: "fill", onsubmit: async (event) => {
      event.preventDefault();
      const values = {};
      for (const input of form.querySelectorAll("input, select")) {
        const value = fieldValue(input);
        if (value !== undefined) values[input.name] = value;
      }
      if (!Object.keys(values).length) {
        problem.textContent = "Fill in the fields first.";
        return;
      }
      try {
        await api("PATCH", `/v1/items/${itemId}/values`, { values });
      } catch (error) {
        problem.textContent = error.message;
        return;
      }
      await moveItem(itemId, stageCode);
    } }, el("p", {}, err.message), fields, problem);
    openDialog("Fill in the required values", form, [
      el("button", { type: "button", onclick: closeDialog }, "Cancel"),
      el("button", { type: "submit", class: "primary", form: "fill" }, "Save and move"),
    ]);
    return;
  }
  const body = el("div", {}, el("p", { class: "error", "data-code": err.code }, err.message));
  try {
    const why = await api("GET", `/v1/items/${itemId}/explain/${encodeURIComponent(stageCode)}`);
    body.append(el("p", {}, why.summary),
      el("ul", { class: "reasons" }, why.reasons.map((r) => el("li", { "data-code": r.code }, r.message))));
  } catch {
    // the refusal's own message says enough
  }
  openDialog("The move was refused", body, [
    el("button", { type: "button", class: "primary", onclick: closeDialog }, "Close"),
  ]);
}

// --- the item panel -------------------------------------------------------------------------

async function openItem(itemId, from) {
  if (from) state.returnFocus = from;
  const base = `/v1/items/${itemId}`;
  const [item, values, checklist, history, watchers, methods] = await Promise.all([
    api("GET", base), api("GET", `${base}/values`), api("GET", `${base}/checklist`),
    api("GET", `${base}/history`), api("GET", `${base}/watchers`), api("GET", `${base}/methods`),
  ]);
  state.panelItem = itemId;
  const panel = document.getElementById("panel");
  const columns = state.pipeline ? state.pipeline.columns : [];
  const fields = values.map((v) => fieldInput({ ...v, options: (columns.find((c) => c.name === v.name) || {}).options }, v.value));
  const problem = el("p", { class: "error", role: "alert" });
  const form = el("form", { id: "values", onsubmit: async (event) => {
    event.preventDefault();
    const changed = {};
    const cleared = [];
    for (const input of form.querySelectorAll("input, select")) {
      const before = values.find((v) => v.name === input.name).value ?? "";
      if (input.value.trim() === before) continue;
      const value = fieldValue(input);
      if (value === undefined) cleared.push(input.name);
      else changed[input.name] = value;
    }
    try {
      if (Object.keys(changed).length) await api("PATCH", `${base}/values`, { values: changed });
      for (const name of cleared) await api("DELETE", `${base}/values/${encodeURIComponent(name)}`);
    } catch (error) {
      problem.textContent = error.message;
      return;
    }
    say("Values saved");
    await refreshAfterChange(itemId);
  } }, fields, problem, fields.length ? el("button", { type: "submit", class: "primary" }, "Save values") : null);

  const checks = checklist.map((entry) => el("div", { class: "field" },
    el("label", {},
      el("input", { type: "checkbox", checked: entry.completed, "data-key": entry.key, onchange: async (event) => {
        try {
          await api("PUT", `${base}/checklist/${encodeURIComponent(entry.key)}`, { completed: event.target.checked });
        } catch (error) {
          event.target.checked = !event.target.checked;
          showError(error);
        }
      } }),
      ` ${entry.label}${entry.required ? " (required)" : ""}`)));

  const watcherInput = el("input", { type: "number", min: 1, id: "watcher", "aria-label": "user id" });
  const watching = el("div", {},
    el("ul", { id: "watchers" }, watchers.map((user) => el("li", {}, `user ${user} `,
      el("button", { type: "button", "aria-label": `stop user ${user} watching`, onclick: async () => {
        await api("DELETE", `${base}/watchers/${user}`);
        await openItem(itemId);
      } }, "×")))),
    el("form", { onsubmit: async (event) => {
      event.preventDefault();
      try {
        await api("PUT", `${base}/watchers/${Number(watcherInput.value)}`);
      } catch (error) {
        showError(error);
        return;
      }
      await openItem(itemId);
    } }, watcherInput, " ", el("button", { type: "submit" }, "Watch")));

  const actions = el("div", { class: "methods" }, methods.filter((m) => m.visible).map((m) =>
    el("button", { type: "button", "data-method": m.code, onclick: async () => {
      try {
        await api("POST", `${base}/methods/${encodeURIComponent(m.code)}`, {});
      } catch (error) {
        showError(error);
        return;
      }
      say(`${m.label || m.code}: done`);
      await refreshAfterChange(itemId);
    } }, m.label || m.code)));

  panel.replaceChildren(
    el("button", { type: "button", id: "close-panel", onclick: closePanel, style: { float: "right" } }, "Close"),
    el("h2", {}, objectName(item), " ", el("span", { class: "hint" }, `#${item.id}`)),
    el("p", { id: "item-state" }, `in ${item.state}`, item.deleted ? " (deleted)" : "",
      item.last_state_changed_at ? ` since ${when(item.last_state_changed_at)}` : ""),
    el("h3", {}, "Values"), form,
    checklist.length ? el("h3", {}, "Checklist") : "", ...checks,
    el("h3", {}, "Methods"), actions,
    el("h3", {}, "Watchers"), watching,
    el("h3", {}, "History"),
    el("table", { id: "history" },
      el("tr", {}, el("th", {}, "to"), el("th", {}, "from"), el("th", {}, "by"), el("th", {}, "at")),
      history.map((h) => el("tr", {}, el("td", {}, h.to_state), el("td", {}, h.from_state || ""),
        el("td", {}, h.method || ""), el("td", {}, when(h.moved_at))))),
  );
  panel.hidden = false;
  if (from) document.getElementById("close-panel").focus();
}

async function refreshAfterChange(itemId) {
  await reloadBoard(itemId);
  await openItem(itemId);
}

function closePanel() {
  document.getElementById("panel").hidden = true;
  state.panelItem = null;
  const back = state.returnFocus && document.querySelector(`.card[data-item="${state.returnFocus.dataset.item}"]`);
  if (back) back.focus();
}

// --- routing --------------------------------------------------------------------------------

async function route() {
  const ok = await signedIn();
  if (ok === null) return;
  if (!ok) {
    showSignIn();
    return;
  }
  const path = location.hash.replace(/^#/, "") || "/";
  const board = path.match(/^\/pipelines\/(\d+)$/);
  const kernel = path.match(/^\/classes\/([^/]+)$/);
  try {
    if (board) await showBoard("pipeline", Number(board[1]));
    else if (kernel) await showBoard("class", decodeURIComponent(kernel[1]));
    else await showHome();
  } catch (err) {
    showError(err, "Could not load the page");
  }
}

document.addEventListener("DOMContentLoaded", () => {
  document.getElementById("sign-out").addEventListener("click", () => {
    sessionStorage.removeItem(TOKEN);
    document.getElementById("panel").hidden = true;
    location.hash = "#/";
    showSignIn();
  });
  document.addEventListener("keydown", (event) => {
    if (event.key === "Escape" && !document.getElementById("dialog").open && !document.getElementById("panel").hidden) closePanel();
  });
  window.addEventListener("hashchange", () => {
    document.getElementById("panel").hidden = true;
    route();
  });
  route();
});
