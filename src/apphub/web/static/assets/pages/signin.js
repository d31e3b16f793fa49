// Sign in: an API key is exchanged once for a session cookie; the page does not keep the key.
import { ApiError, signIn } from "../api.js";
import { h, replace } from "../dom.js";

export function render(view, { query }) {
  const error = h("p", { class: "error", role: "alert" });
  const key = h("input", { id: "key", name: "key", type: "password", autocomplete: "off", required: true,
    spellcheck: "false", "aria-describedby": "key-help" });
  const form = h("form", { class: "card signin", onsubmit: async (event) => {
    event.preventDefault();
    replace(error);
    try {
      await signIn(key.value.trim());
      key.value = "";
      const next = query.next && query.next.startsWith("/") && !query.next.startsWith("/signin") ? query.next : "/";
      location.hash = `#${next}`;
    } catch (problem) {
      replace(error, problem instanceof ApiError ? problem.message : `apphub does not answer: ${problem.message}`);
      key.select();
    }
  } },
  h("h1", {}, "Sign in"),
  h("label", { for: "key" }, "API key"),
  key,
  h("p", { id: "key-help", class: "muted" },
    "An apphub key (apphub keys create --name NAME --role read|write|admin). It is exchanged for a session cookie ",
    "and is not kept by this page."),
  h("button", { type: "submit", class: "primary" }, "Sign in"),
  error);
  replace(view, form);
  key.focus();
}
