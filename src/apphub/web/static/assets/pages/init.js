// Service initialisation: per product, per step, what the first start did, and each service's
// connection test.
import { get } from "../api.js";
import { badge, h, ms, replace, when } from "../dom.js";
import { table } from "../table.js";

export async function render(view) {
  const [init, services] = await Promise.all([get("/api/v1/init/status"), get("/api/v1/services")]);
  replace(view, h("h1", {}, "Initialisation"),
    h("section", {}, h("h2", {}, "Products"),
      init.services.length ? init.services.map((product) => h("div", { class: "card", "data-product": product.service },
        h("h3", {}, product.title || product.service, " ", badge(product.state), " ",
          h("span", { class: "muted small" }, "finished ", when(product.finished_at), `, ${product.trigger}`)),
        table([["Step", (s) => s.description || s.name], ["Result", (s) => badge(s.state)],
          ["Attempts", (s) => String(s.attempts)], ["Detail", (s) => s.last_error || s.detail || ""]], product.steps)))
        : h("p", { class: "muted" }, init.enabled.length ? "Not run yet." : "No product is enabled for initialisation.")),
    h("section", {}, h("h2", {}, "Connection tests"),
      table([["Service", (s) => s.name], ["Kind", (s) => s.kind], ["Health", (s) => badge(s.health)],
        ["Version", (s) => s.version || "—"], ["Checked", (s) => when(s.checked_at)], ["Took", (s) => ms(s.duration_ms)],
        ["Why", (s) => s.reason || ""]], services.services)));
}
