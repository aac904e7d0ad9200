// /api/docs: the gateway's OpenAPI description in Swagger UI, everything served by this gateway.
// Swagger UI (vendor/swagger-ui/) is started here rather than by an inline script: the page's
// Content-Security-Policy allows no inline script. The token is the web page's own (localStorage
// "castray.token", or "#token=..." in the address, as for /ui), so a user signed in at /ui is signed in
// here; a gateway that needs a token the page does not have asks for it. "Try it out" calls this gateway.
"use strict";

(() => {
  const TOKEN_KEY = "castray.token";
  const SPEC_URL = "/api/openapi.json";

  function storedToken() {
    try { return localStorage.getItem(TOKEN_KEY) || ""; } catch { return ""; }
  }

  function keepToken(value) {
    try { localStorage.setItem(TOKEN_KEY, value); } catch { /* storage disabled: this page only */ }
  }

  /** A token in the fragment is kept, then taken out of the address bar and the history. */
  function adoptTokenFromUrl() {
    const params = new URLSearchParams(location.hash.slice(1));
    const given = params.get("token");
    if (!given) return "";
    keepToken(given);
    history.replaceState(history.state, "", location.pathname + location.search);
    return given;
  }

  function showError(text) {
    const box = document.getElementById("docs-error");
    box.textContent = text;
    box.hidden = !text;
  }

  /** The spec, or null when the gateway wants a token (401). */
  async function fetchSpec(token) {
    const headers = { Accept: "application/json" };
    if (token) headers.Authorization = `Bearer ${token}`;
    const resp = await fetch(SPEC_URL, { headers, credentials: "same-origin", cache: "no-cache" });
    if (resp.status === 401) return null;
    if (!resp.ok) throw new Error(`${SPEC_URL} answered ${resp.status}`);
    return resp.json();
  }

  function render(spec, token) {
    const ui = window.SwaggerUIBundle({
      spec,
      dom_id: "#swagger-ui",
      layout: "BaseLayout",
      presets: [window.SwaggerUIBundle.presets.apis],
      deepLinking: true,
      validatorUrl: null, // its badge would ask validator.swagger.io
      displayRequestDuration: true,
      defaultModelsExpandDepth: 0,
      onComplete: () => {
        if (token) ui.preauthorizeApiKey("bearer", token);
      },
    });
    window.ui = ui;
  }

  function askForToken() {
    const form = document.getElementById("token-form");
    const input = document.getElementById("token-input");
    form.hidden = false;
    input.focus();
    form.addEventListener("submit", (event) => {
      event.preventDefault();
      const token = input.value.trim();
      if (!token) return;
      keepToken(token);
      start(token);
    }, { once: true });
  }

  async function start(token) {
    try {
      const spec = await fetchSpec(token);
      if (spec === null) {
        showError(token ? "The gateway refused that token." : "");
        askForToken();
        return;
      }
      document.getElementById("token-form").hidden = true;
      showError("");
      render(spec, token);
    } catch (err) {
      showError(`Could not load the API description: ${err.message}`);
    }
  }

  start(adoptTokenFromUrl() || storedToken());
})();
