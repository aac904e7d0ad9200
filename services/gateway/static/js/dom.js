// Building DOM from data, always as text: nothing here ever parses a string as markup.

/**
 * Create an element. `props`: className, dataset, attributes (set with setAttribute), `text`
 * (textContent), `on` (event listeners). Children: nodes, or strings/numbers added as text nodes.
 */
export function h(tag, props = {}, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(props)) {
    if (value === undefined || value === null || value === false) continue;
    if (key === "className") el.className = value;
    else if (key === "text") el.textContent = String(value);
    else if (key === "dataset") Object.assign(el.dataset, value);
    else if (key === "on") for (const [ev, fn] of Object.entries(value)) el.addEventListener(ev, fn);
    else if (key === "hidden" || key === "disabled" || key === "checked" || key === "selected") el[key] = Boolean(value);
    else if (key === "value") el.value = value;
    else el.setAttribute(key, value === true ? "" : String(value));
  }
  for (const child of children) append(el, child);
  return el;
}

function append(el, child) {
  if (child === null || child === undefined || child === false) return;
  if (Array.isArray(child)) child.forEach((c) => append(el, c));
  else if (child instanceof Node) el.appendChild(child);
  else el.appendChild(document.createTextNode(String(child)));
}

/**
 * Set an element's text only if it changed (avoids needless layout work on live updates). An element that
 * holds one text node keeps it and has its data changed: replacing the node (textContent) makes Chromium
 * compute its style and build its layout object again, most of a scroll frame's style work in the table.
 */
export function setText(el, value) {
  const text = value === null || value === undefined ? "" : String(value);
  const only = el.firstChild;
  if (only !== null && only === el.lastChild && only.nodeType === Node.TEXT_NODE && text !== "") {
    if (only.data === text) return false;
    only.data = text;
    return true;
  }
  if (el.textContent === text) return false;
  el.textContent = text;
  return true;
}

/** Set an attribute (or remove it for null) only if it changed: attribute writes invalidate styles. */
export function setAttr(el, name, value) {
  if (value === null || value === undefined) {
    if (el.hasAttribute(name)) el.removeAttribute(name);
    return;
  }
  const text = String(value);
  if (el.getAttribute(name) !== text) el.setAttribute(name, text);
}

/** Show or hide an element only if that changes: writing `hidden` again still invalidates its style. */
export function setHidden(el, hidden) {
  if (el.hidden !== hidden) el.hidden = hidden;
}

export function byId(id) {
  const el = document.getElementById(id);
  if (!el) throw new Error(`missing element #${id}`);
  return el;
}

/** Show a message (text) in an element, with a kind: "error" | "ok" | "info"; empty text hides it. */
export function showMessage(el, text, kind = "info") {
  el.hidden = !text;
  el.dataset.kind = kind;
  setText(el, text || "");
}

/** Replace an element's children with the given ones. */
export function replaceChildren(el, ...children) {
  el.replaceChildren();
  for (const c of children) append(el, c);
}
