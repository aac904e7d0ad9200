// The gateway's REST API, from the page: JSON in and out, errors as readable messages.

const TOKEN_KEY = "castray.token";
let onUnauthorized = () => {};

/** The API error as an Error whose message is the API's own words. */
export class ApiError extends Error {
  constructor(message, { status = 0, code = "error", body = null } = {}) {
    super(message);
    this.status = status;
    this.code = code;
    this.body = body;
  }
}

let pageToken = "";

export function token() {
  try { return localStorage.getItem(TOKEN_KEY) || pageToken; } catch { return pageToken; }
}

export function setToken(value) {
  pageToken = value || "";
  try {
    if (value) localStorage.setItem(TOKEN_KEY, value); else localStorage.removeItem(TOKEN_KEY);
  } catch { /* storage disabled: the token lives for this page only */ }
}

/** A token handed over in the address's fragment (`/ui#token=...`, as `castray up` prints it) is kept,
 * then taken out of the address bar and the history. A fragment never reaches a server or its logs. */
function adoptTokenFromUrl() {
  const params = new URLSearchParams(location.hash.slice(1));
  const given = params.get("token");
  if (!given) return;
  setToken(given);
  params.delete("token");
  const rest = params.toString();
  history.replaceState(history.state, "", `${location.pathname}${location.search}${rest ? `#${rest}` : ""}`);
}

adoptTokenFromUrl();

/** WebSocket subprotocols: `castray.v1` (the one the gateway selects) and, with a token, the token as
 * `castray.bearer.<base64url>`: a browser cannot set headers on a WebSocket, and a URL would be logged. */
export function wsProtocols() {
  const t = token();
  if (!t) return ["castray.v1"];
  let binary = "";
  for (const byte of new TextEncoder().encode(t)) binary += String.fromCharCode(byte);
  const encoded = btoa(binary).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
  return ["castray.v1", `castray.bearer.${encoded}`];
}

/** Called with no argument when the gateway answers 401 (the page then asks for a token). */
export function setUnauthorizedHandler(fn) { onUnauthorized = fn; }

function headers(t) {
  const h = { Accept: "application/json" };
  if (t) h.Authorization = `Bearer ${t}`;
  return h;
}

/** A 401 asks for a token only if the request carried the token in use now: a request sent before the
 * user gave a (new) token may still be refused after it, and must not ask again. */
function refused(sentToken) {
  if (sentToken === token()) onUnauthorized();
}

function errorFrom(status, body, fallback) {
  if (body && typeof body === "object") {
    const message = body.error || body.message || body.detail || fallback;
    return new ApiError(String(message), { status, code: body.code || "error", body });
  }
  return new ApiError(fallback, { status });
}

async function parse(response) {
  const text = await response.text();
  if (!text) return null;
  try { return JSON.parse(text); } catch { return { error: text.slice(0, 300) }; }
}

/** Call the API; resolves to the JSON body, rejects with an ApiError carrying the API's message. */
export async function request(method, path, body) {
  const sent = token();
  const init = { method, headers: headers(sent), cache: "no-store" };
  if (body !== undefined) {
    init.body = JSON.stringify(body);
    init.headers["Content-Type"] = "application/json";
  }
  let response;
  try {
    response = await fetch(path, init);
  } catch (e) {
    throw new ApiError(`the gateway did not answer (${e.message || "network error"})`, { code: "network" });
  }
  const data = await parse(response);
  if (response.status === 401) refused(sent);
  if (!response.ok || (data && data.success === false)) {
    throw errorFrom(response.status, data, `${method} ${path} failed with HTTP ${response.status}`);
  }
  return data;
}

export const get = (path) => request("GET", path);
export const post = (path, body) => request("POST", path, body);
export const del = (path) => request("DELETE", path);

/**
 * Upload a file as multipart field `file` with progress (fetch cannot report upload progress).
 * `onProgress(loaded, total)`; resolves to {upload_id, file_name, file_size, sha256}.
 * Returns {promise, abort}.
 */
export function upload(path, file, onProgress) {
  const xhr = new XMLHttpRequest();
  const promise = new Promise((resolve, reject) => {
    xhr.open("POST", path);
    const sent = token();
    if (sent) xhr.setRequestHeader("Authorization", `Bearer ${sent}`);
    xhr.setRequestHeader("Accept", "application/json");
    xhr.upload.addEventListener("progress", (e) => {
      if (e.lengthComputable) onProgress(e.loaded, e.total);
    });
    xhr.addEventListener("load", () => {
      let data = null;
      try { data = JSON.parse(xhr.responseText || "null"); } catch { data = { error: xhr.responseText } }
      if (xhr.status === 401) refused(sent);
      if (xhr.status >= 200 && xhr.status < 300 && data && data.upload_id) resolve(data);
      else reject(errorFrom(xhr.status, data, `upload failed with HTTP ${xhr.status}`));
    });
    xhr.addEventListener("error", () => reject(new ApiError("the upload was interrupted", { code: "network" })));
    xhr.addEventListener("abort", () => reject(new ApiError("upload cancelled", { code: "aborted" })));
    const form = new FormData();
    form.append("file", file, file.name);
    xhr.send(form);
  });
  return { promise, abort: () => xhr.abort() };
}

/** Lists from the API may come bare or wrapped ({clusters: [...]}, {nodes: [...]}, {items: [...]}). */
export function listFrom(data, ...keys) {
  if (Array.isArray(data)) return data;
  if (data && typeof data === "object") {
    for (const key of [...keys, "items", "data", "results"]) if (Array.isArray(data[key])) return data[key];
  }
  return [];
}
