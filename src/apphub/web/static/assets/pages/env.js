// Environment variables: every scope's variables with their kind and source (secrets masked).
import { get } from "../api.js";
import { h, replace, short } from "../dom.js";
import { table } from "../table.js";

export async function render(view) {
  const env = await get("/api/v1/env");
  replace(view, h("h1", {}, "Environment variables"),
    h("p", { class: "muted" }, "env.ini at version ", h("code", {}, short(env.version)),
      ". Mapped variables follow their config.ini key; independent ones are set with apphub env set."),
    Object.entries(env.scopes).map(([scope, found]) => h("section", { "data-scope": scope },
      h("h2", {}, scope === "global" ? "Every service (global)" : scope),
      table([["Name", (v) => h("code", {}, v.name)], ["Value", (v) => v.secret ? h("em", {}, v.value) : v.value],
        ["Kind", (v) => v.kind], ["Source", (v) => v.source || ""]], found.variables, { empty: "No variable." }))));
}
