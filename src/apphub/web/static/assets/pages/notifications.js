// Notifications: the destinations (URLs masked) and the deliveries with their last result.
import { get } from "../api.js";
import { badge, h, replace, when } from "../dom.js";
import { table } from "../table.js";

export async function render(view) {
  const [destinations, deliveries] = await Promise.all([
    get("/api/v1/notifications/destinations"), get("/api/v1/notifications/deliveries?limit=50")]);
  replace(view, h("h1", {}, "Notifications"),
    h("section", {}, h("h2", {}, "Destinations"),
      table([["Name", (d) => d.name], ["Kind", (d) => d.kind], ["Where", (d) => d.url],
        ["Events", (d) => (d.events || []).join(", ")], ["State", (d) => badge(d.enabled ? "applied" : "unknown", d.enabled ? "enabled" : "disabled")]],
      destinations.destinations || [], { empty: "No destination. Add one with apphub notify add." })),
    h("section", {}, h("h2", {}, "Deliveries"),
      table([["When", (d) => when(d.created_at)], ["Destination", (d) => d.destination], ["Event", (d) => d.event_type],
        ["State", (d) => badge(d.state === "delivered" ? "applied" : d.state === "failed" ? "failed" : "pending", d.state)],
        ["Attempts", (d) => String(d.attempts ?? "")], ["Last answer", (d) => d.last_status ?? d.last_error ?? ""]],
      deliveries.deliveries || [], { empty: "Nothing sent yet." })));
}
