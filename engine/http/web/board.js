// Flowkernel's web board: pipelines, their boards and items, through the HTTP API.
// Every change goes through the API with the signed-in token; nothing is loaded from elsewhere.
"use strict";

const TOKEN = "flowkernel.token";
const state = { view: null, pipeline: null, board: null, asOf: null, me: null, panelItem: null, returnFocus: null };

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
// `asOf` (a UTC ISO instant, pipelines only) shows the board as it was then, read-only.
async function showBoard(kind, ref, focusItem, asOf = null) {
  let title;
  let board;
  if (kind === "pipeline") {
    const past = asOf ? `?as_of=${encodeURIComponent(asOf)}` : "";
    const [pipeline, found] = await Promise.all([
      api("GET", `/v1/pipelines/${ref}`),
      api("GET", `/v1/pipelines/${ref}/board${past}`),
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
    asOf = null;
  }
  state.view = { kind, ref };
  state.asOf = asOf;
  state.board = board;
  document.getElementById("crumbs").replaceChildren(el("a", { href: "#/" }, "Home"), " / ", title);
  const totals = [items(board.count)];
  if (board.value_column) {
    // a past board has no sums: values are not versioned
    totals.push(`${board.value_column}: ${asOf ? "—" : number(board.value_sum)}`);
    totals.push(`weighted: ${asOf ? "—" : number(board.weighted_value)}`);
  }
  const hint = asOf
    ? "The board then: read-only. Now returns to the live board."
    : kind === "pipeline"
      ? "Drag a card to another stage, or focus it and press ← or →; Enter opens it."
      : "Enter on a card opens it, with the methods you may run.";
  const diagram = el("section", { id: "diagram", hidden: true, "aria-label": "diagram" });
  const view = document.getElementById("view");
  view.replaceChildren(
    el("div", { class: "toolbar" },
      el("h1", {}, title),
      kind === "pipeline" ? pipelineTabs(ref, "board") : null,
      el("span", { id: "board-totals" }, totals.join(" · ")),
      el("button", { type: "button", id: "show-diagram", "aria-expanded": "false",
        onclick: (event) => toggleDiagram(event.currentTarget, diagram, board.pipeline_id) }, asOf ? "Diagram (now)" : "Diagram"),
      kind === "pipeline" ? asOfPicker(ref, asOf) : null,
      el("span", { class: "hint" }, hint)),
    asOf
      ? el("p", { id: "as-of-banner", class: "banner", role: "status" },
          el("strong", {}, `As of ${when(asOf)}`),
          " — the board as it was then: each stage's items at that instant, latest entry first. "
          + "Cards are read-only; sums are not shown, as values are not versioned (a card shows today's value).")
      : "",
    diagram,
    el("div", { class: "board" + (asOf ? " past" : ""), id: "board", dataset: { asOf: asOf || "" } },
      board.stages.map(stageColumn)),
  );
  if (focusItem) {
    const card = view.querySelector(`.card[data-item="${focusItem}"]`);
    if (card) card.focus();
  }
}

// Board | Forecast: the two views of a pipeline.
function pipelineTabs(ref, current) {
  const tab = (name, label, href) => el("a", {
    href, class: "tab", id: `tab-${name}`, "aria-current": current === name ? "page" : null,
  }, label);
  return el("nav", { class: "tabs", "aria-label": "views of the pipeline" },
    tab("board", "Board", `#/pipelines/${ref}`),
    tab("forecast", "Forecast", `#/pipelines/${ref}/forecast`));
}

// A datetime-local input's value (local time, no offset) as a UTC ISO instant; null if empty.
function localToIso(value) {
  if (!value) return null;
  const date = new Date(value); // a date-time without an offset is read as local time
  return Number.isNaN(date.getTime()) ? undefined : date.toISOString();
}

// A UTC ISO instant as a datetime-local input's value (local time, to the second).
function isoToLocal(iso) {
  if (!iso) return "";
  const date = new Date(iso);
  const pad = (n) => String(n).padStart(2, "0");
  return `${date.getFullYear()}-${pad(date.getMonth() + 1)}-${pad(date.getDate())}`
    + `T${pad(date.getHours())}:${pad(date.getMinutes())}:${pad(date.getSeconds())}`;
}

// The past-instant picker: Show loads the board at the instant; Now returns to the live board.
function asOfPicker(ref, asOf) {
  const input = el("input", { id: "as-of", name: "as_of", type: "datetime-local", step: 1, value: isoToLocal(asOf) });
  const problem = el("span", { id: "as-of-error", class: "error", role: "alert" });
  const form = el("form", { id: "as-of-form", class: "as-of", novalidate: true, "aria-label": "the board at a past instant",
    onsubmit: async (event) => {
      event.preventDefault();
      const iso = localToIso(input.value);
      if (!iso) {
        problem.textContent = "Pick a date and time first.";
        input.focus();
        return;
      }
      problem.textContent = "";
      try {
        await showBoard("pipeline", ref, null, iso);
      } catch (err) {
        problem.textContent = err.message; // the API's reason, e.g. an instant in the future
        return;
      }
      history.pushState(null, "", `#/pipelines/${ref}?as_of=${encodeURIComponent(iso)}`);
      document.getElementById("as-of-show").focus();
      say(`The board as of ${when(iso)}`);
    } },
    el("label", { for: "as-of" }, "Board at"),
    input,
    el("button", { type: "submit", id: "as-of-show" }, "Show"),
    el("button", { type: "button", id: "as-of-now", onclick: async () => {
      try {
        await showBoard("pipeline", ref, null, null);
      } catch (err) {
        problem.textContent = err.message;
        return;
      }
      if (location.hash !== `#/pipelines/${ref}`) history.pushState(null, "", `#/pipelines/${ref}`);
      document.getElementById("as-of-now").focus();
      say("The live board");
    } }, "Now"),
    problem);
  return form;
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
  if (state.view && state.view.kind !== "forecast") await showBoard(state.view.kind, state.view.ref, focusItem, state.asOf);
}

function stageColumn(stage) {
  const parts = [items(stage.count)];
  if (state.board.value_column) parts.push(state.asOf ? "—" : number(stage.value_sum));
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
      ? await api("GET", `/v1/pipelines/${state.view.ref}/stages/${stage.code}/items?cursor=${encodeURIComponent(cursor)}`
        + (state.asOf ? `&as_of=${encodeURIComponent(state.asOf)}` : ""))
      : await api("GET", `/v1/classes/${encodeURIComponent(state.view.ref)}/board?cursor=${encodeURIComponent(`${stage.id}:${cursor}`)}`)
        .then((b) => b.stages.find((s) => s.id === stage.id) || { items: [], next_cursor: null });
    cards.append(...page.items.map((item) => card(item, stage)));
    button.replaceWith(page.next_cursor ? moreButton(stage, cards, page.next_cursor) : "");
  } }, "More");
  return button;
}

// A card; on a past board (state.asOf) it is read-only: no drag, no keyboard move, no panel.
function card(item, stage) {
  const breached = Boolean(item.sla_breached_at);
  const past = Boolean(state.asOf);
  const node = el("li", {
    class: "card" + (breached ? " breached" : "") + (past ? " readonly" : ""),
    tabindex: 0,
    dataset: { item: item.id, stage: stage.code },
    "aria-label": `${objectName(item)} in ${stage.name}${breached ? ", SLA breached" : ""}${past ? ", read-only" : ""}`,
  },
    item.value !== null ? el("span", { class: "value", title: past ? "today's value" : null }, number(item.value)) : null,
    el("span", {}, objectName(item)),
    breached ? el("span", { class: "badge", title: `breached ${when(item.sla_breached_at)}` }, "SLA breached") : null,
    el("div", { class: "hint" }, `#${item.id}`, item.assigned_user_id ? ` · user ${item.assigned_user_id}` : ""));
  if (past) return node;
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

// --- the forecast ---------------------------------------------------------------------------

// A figure and, when there is a previous period, the previous period's figure beside it.
function figure(value, before, format, hasPrevious) {
  return el("span", { class: "figure" }, format(value),
    hasPrevious ? el("span", { class: "prev" }, ` (prev ${format(before)})`) : null);
}

function amount(value) {
  return value === null || value === undefined ? "—" : number(value);
}

function percent(value) {
  return value === null || value === undefined ? "—" : `${Math.round(value * 1000) / 10}%`;
}

function days(value) {
  return value === null || value === undefined ? "—" : `${Number(value).toFixed(1)} d`;
}

function count(value) {
  return value === null || value === undefined ? "—" : String(value);
}

function day(text) {
  return text ? new Date(text).toLocaleDateString() : "";
}

// `params` (URLSearchParams from the address): close_column, period, idle_days, as_of.
async function showForecast(ref, params) {
  const pipeline = await api("GET", `/v1/pipelines/${ref}`);
  state.pipeline = pipeline;
  state.view = { kind: "forecast", ref };
  state.board = null;
  state.asOf = null;
  const dates = pipeline.columns.filter((c) => c.field_type === "date" && c.is_active);
  // no close column in the address: the pipeline's first date column; an empty one: none
  const close = params.has("close_column") ? params.get("close_column") : (dates[0] ? dates[0].name : "");
  const period = params.get("period") || "month";
  const query = new URLSearchParams({ period });
  if (close) query.set("close_column", close);
  for (const key of ["idle_days", "as_of"]) if (params.get(key)) query.set(key, params.get(key));

  document.getElementById("crumbs").replaceChildren(el("a", { href: "#/" }, "Home"), " / ",
    el("a", { href: `#/pipelines/${ref}` }, pipeline.name), " / Forecast");
  const closeSelect = el("select", { id: "close-column", name: "close_column" },
    el("option", { value: "" }, "(none)"),
    dates.map((c) => el("option", { value: c.name, selected: c.name === close }, c.label || c.name)));
  const periodSelect = el("select", { id: "period", name: "period" },
    ["month", "quarter", "week"].map((p) => el("option", { value: p, selected: p === period }, p)));
  const idleInput = el("input", { id: "idle-days", name: "idle_days", type: "text", value: params.get("idle_days") || "",
    placeholder: "7, or lead:7,qualified:14", "aria-describedby": "idle-days-hint", size: 22 });
  const asOfInput = el("input", { id: "forecast-as-of", name: "as_of", type: "datetime-local", step: 1,
    value: isoToLocal(params.get("as_of")) });
  const problem = el("p", { id: "forecast-error", class: "error", role: "alert" });
  const form = el("form", { id: "forecast-form", class: "forecast-form", novalidate: true, onsubmit: (event) => {
    event.preventDefault();
    const next = new URLSearchParams({ close_column: closeSelect.value, period: periodSelect.value });
    if (idleInput.value.trim()) next.set("idle_days", idleInput.value.trim());
    const iso = localToIso(asOfInput.value);
    if (iso === undefined) {
      problem.textContent = "That date and time is not complete.";
      return;
    }
    if (iso) next.set("as_of", iso);
    const hash = `#/pipelines/${ref}/forecast?${next}`;
    if (location.hash === hash) route();
    else location.hash = hash;
  } },
    el("div", { class: "field" }, el("label", { for: "close-column" }, "Close date column"), closeSelect),
    el("div", { class: "field" }, el("label", { for: "period" }, "Period"), periodSelect),
    el("div", { class: "field" }, el("label", { for: "idle-days" }, "Idle after (days)"), idleInput,
      el("span", { id: "idle-days-hint", class: "hint" }, "one number for every open stage, or stage:days,…")),
    el("div", { class: "field" }, el("label", { for: "forecast-as-of" }, "At (empty: now)"), asOfInput),
    el("button", { type: "submit", class: "primary", id: "forecast-show" }, "Show"));

  const view = document.getElementById("view");
  const figures = el("div", { id: "forecast", "aria-live": "polite" }, el("p", { class: "hint" }, "Loading…"));
  view.replaceChildren(
    el("div", { class: "toolbar" }, el("h1", {}, pipeline.name), pipelineTabs(ref, "forecast"),
      el("span", { class: "hint" }, "Weighted value by expected close, and each stage's flow, beside the previous period's.")),
    form, problem, figures);
  let found;
  try {
    found = await api("GET", `/v1/pipelines/${ref}/forecast?${query}`);
  } catch (err) {
    figures.replaceChildren();
    problem.textContent = err.message;
    problem.dataset.code = err.code;
    return;
  }
  figures.replaceChildren(...forecastFigures(found));
}

function forecastFigures(found) {
  const before = found.previous;
  const has = Boolean(before);
  const valued = found.value_column !== null;
  const unit = { month: "month", quarter: "quarter", week: "week" }[found.period] || found.period;
  const summary = el("p", { id: "forecast-summary" },
    el("strong", {}, `As of ${when(found.as_of)}`), " · open items: ",
    figure(found.open_count, before && before.open_count, count, has),
    valued ? [" · ", `${found.value_column}: `, figure(found.open_value, before && before.open_value, amount, has),
      " · weighted: ", figure(found.weighted_value, before && before.weighted_value, amount, has)] : null);
  const windowNote = el("p", { class: "hint", id: "forecast-window" },
    `Flow over the ${unit} ${day(found.window_start)} – ${day(found.window_end)}`,
    has ? `; prev: the ${unit} ${day(before.window_start)} – ${day(before.window_end)}` : "",
    ". Values and close dates are the items' current ones.");

  const previousBy = new Map(has ? before.by_period.map((p) => [p.period, p]) : []);
  const periodRow = (p) => {
    const then = previousBy.get(p.period) || { count: 0, value: valued ? "0" : null, weighted_value: valued ? "0" : null };
    return el("tr", { dataset: { period: p.period === null ? "" : p.period } },
      el("th", { scope: "row" }, p.period === null ? "No close date" : p.period,
        p.start ? el("span", { class: "hint" }, ` from ${new Date(p.start + "T00:00:00").toLocaleDateString()}`) : null),
      el("td", { "data-figure": "count" }, figure(p.count, then.count, count, has)),
      el("td", { "data-figure": "value" }, valued ? figure(p.value, then.value, amount, has) : "—"),
      el("td", { "data-figure": "weighted" }, valued ? figure(p.weighted_value, then.weighted_value, amount, has) : "—"));
  };
  const byPeriod = el("table", { id: "by-period", class: "figures" },
    el("caption", {}, found.close_column
      ? `Open items by expected close ${unit} (${found.close_column})`
      : "Open items (no close date column chosen)"),
    el("thead", {}, el("tr", {}, el("th", { scope: "col" }, unit[0].toUpperCase() + unit.slice(1)),
      el("th", { scope: "col" }, "Items"), el("th", { scope: "col" }, "Value"), el("th", { scope: "col" }, "Weighted"))),
    el("tbody", {}, found.by_period.length
      ? found.by_period.map(periodRow)
      : el("tr", {}, el("td", { colspan: 4, class: "hint" }, "No open items."))),
    el("tfoot", {}, el("tr", { dataset: { period: "total" } }, el("th", { scope: "row" }, "All open"),
      el("td", { "data-figure": "count" }, figure(found.open_count, before && before.open_count, count, has)),
      el("td", { "data-figure": "value" }, figure(found.open_value, before && before.open_value, amount, has && valued)),
      el("td", { "data-figure": "weighted" }, figure(found.weighted_value, before && before.weighted_value, amount, has && valued)))));

  const previousStages = new Map(has ? before.stages.map((s) => [s.stage_id, s]) : []);
  const stageRow = (s) => {
    const then = previousStages.get(s.stage_id) || {};
    const cell = (name, format, shown = true) => el("td", { "data-figure": name },
      figure(s[name], then[name], format, has && shown));
    const idle = s.idle_days === null
      ? el("td", { "data-figure": "idle" }, "—")
      : el("td", { "data-figure": "idle" }, figure(s.idle, then.idle, count, has),
        el("span", { class: "hint" }, ` over ${s.idle_days} d`));
    return el("tr", { dataset: { stage: s.code } },
      el("th", { scope: "row" }, s.name, s.is_won ? " ✓" : "", s.is_lost ? " ✗" : ""),
      el("td", { "data-figure": "probability" }, s.probability === null ? "—" : `${s.probability}%`),
      cell("in_stage", count), cell("entered", count), cell("advanced", count),
      cell("conversion", percent), cell("p50_days", days), cell("p90_days", days), idle);
  };
  const heads = ["Stage", "Probability", "In stage", "Entered", "Advanced", "Conversion", "p50 in stage", "p90 in stage", "Idle"];
  const stagesTable = el("table", { id: "stage-figures", class: "figures" },
    el("caption", {}, `Stages over the ${unit} to ${when(found.window_end)}`),
    el("thead", {}, el("tr", {}, heads.map((h) => el("th", { scope: "col" }, h)))),
    el("tbody", {}, found.stages.map(stageRow)));
  return [summary, windowNote, byPeriod, stagesTable,
    el("p", { class: "hint" }, "Conversion: of the items that entered a stage in the period, the share that went further in it. "
      + "p50 and p90: days in the stage of the stays that ended in the period. Idle: items with no move and no call for longer than the threshold.")];
}

// --- routing --------------------------------------------------------------------------------

async function route() {
  const ok = await signedIn();
  if (ok === null) return;
  if (!ok) {
    showSignIn();
    return;
  }
  const [path, search] = (location.hash.replace(/^#/, "") || "/").split("?");
  const params = new URLSearchParams(search || "");
  const board = path.match(/^\/pipelines\/(\d+)$/);
  const forecast = path.match(/^\/pipelines\/(\d+)\/forecast$/);
  const kernel = path.match(/^\/classes\/([^/]+)$/);
  try {
    if (board) await showBoard("pipeline", Number(board[1]), null, params.get("as_of"));
    else if (forecast) await showForecast(Number(forecast[1]), params);
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
