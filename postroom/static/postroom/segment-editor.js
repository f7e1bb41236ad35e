// Segment rule editor: renders the rule tree held in #id_rules (JSON) as nested groups of
// rows, writes every change back to #id_rules, and fires "rules-changed" so htmx refreshes
// the live count. The server validates the tree again on save and on every count.
(function () {
  "use strict";
  const schema = JSON.parse(document.getElementById("segment-schema").textContent);
  const input = document.getElementById("id_rules");
  const root = document.getElementById("rule-editor");
  const MAX_DEPTH = 4;
  let tree;
  try { tree = JSON.parse(input.value || "{}"); } catch (e) { tree = {}; }
  if (!tree || !Array.isArray(tree.rules)) tree = { match: "all", rules: [] };

  function el(tag, attrs, children) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (k === "text") node.textContent = v;
      else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
      else node.setAttribute(k, v);
    }
    (children || []).forEach((c) => node.appendChild(c));
    return node;
  }

  function select(options, value, label, onchange) {
    const s = el("select", { "aria-label": label, onchange });
    options.forEach(([v, text]) => {
      const o = el("option", { value: v, text });
      if (v === value) o.selected = true;
      s.appendChild(o);
    });
    return s;
  }

  function operatorsFor(rule) {
    if (rule.kind === "field") {
      const field = schema.fields[rule.key];
      return field ? schema.field_operators[field.type] : {};
    }
    return (schema.kinds[rule.kind] || {}).operators || {};
  }

  function kindOptions() {
    const opts = Object.entries(schema.kinds)
      .filter(([kind]) => kind !== "field")
      .map(([kind, k]) => [kind, k.label.charAt(0).toUpperCase() + k.label.slice(1)]);
    Object.entries(schema.fields).forEach(([key, f]) => opts.push(["field:" + key, "Field: " + f.label]));
    return opts;
  }

  function defaultRule() {
    return { kind: "email", op: "contains", value: "" };
  }

  function valueInput(rule, changed) {
    const ops = operatorsFor(rule);
    const op = ops[rule.op];
    if (!op || !op[1]) return null;
    const set = (v) => { rule.value = v; changed(false); };
    if (rule.kind === "status") {
      if (!schema.statuses.includes(rule.value)) rule.value = schema.statuses[0];
      return select(schema.statuses.map((s) => [s, s]), rule.value, "Status", (e) => set(e.target.value));
    }
    const attrs = { "aria-label": "Value", value: rule.value === undefined ? "" : rule.value };
    const fieldType = rule.kind === "field" && schema.fields[rule.key] ? schema.fields[rule.key].type : null;
    if (rule.op === "within_days" || rule.op === "older_than_days") {
      Object.assign(attrs, { type: "number", min: "0", placeholder: "days", style: "width:6rem" });
    } else if (rule.kind === "created_at" || fieldType === "date") {
      attrs.type = "date";
    } else if (fieldType === "number") {
      Object.assign(attrs, { type: "number", step: "any", style: "width:8rem" });
    } else if (rule.kind === "tag") {
      attrs.list = "segment-tags";
      attrs.placeholder = "tag name";
    } else {
      attrs.placeholder = "value";
    }
    const numeric = attrs.type === "number";
    const node = el("input", attrs);
    node.addEventListener("input", (e) => {
      const raw = e.target.value;
      set(numeric && raw !== "" && !isNaN(Number(raw)) ? Number(raw) : raw);
    });
    return node;
  }

  function renderRule(rule, parent, index, path, changed) {
    const row = el("div", { class: "rule", "data-path": path });
    const kindValue = rule.kind === "field" ? "field:" + rule.key : rule.kind;
    row.appendChild(select(kindOptions(), kindValue, "Condition", (e) => {
      const v = e.target.value;
      if (v.startsWith("field:")) { rule.kind = "field"; rule.key = v.slice(6); } else { rule.kind = v; delete rule.key; }
      rule.op = Object.keys(operatorsFor(rule))[0];
      rule.value = "";
      changed(true);
    }));
    const ops = operatorsFor(rule);
    if (!ops[rule.op]) rule.op = Object.keys(ops)[0];
    row.appendChild(select(Object.entries(ops).map(([op, o]) => [op, o[0]]), rule.op, "Operator", (e) => {
      rule.op = e.target.value;
      if (!operatorsFor(rule)[rule.op][1]) delete rule.value;
      changed(true);
    }));
    const value = valueInput(rule, changed);
    if (value) row.appendChild(value);
    row.appendChild(el("button", { type: "button", class: "small", "aria-label": "Remove rule", text: "✕", onclick: () => {
      parent.rules.splice(index, 1);
      changed(true);
    } }));
    return row;
  }

  function renderGroup(group, parent, index, path, depth, changed) {
    const box = el("div", { class: "rule-group", "data-path": path });
    const head = el("div", { class: "group-head" }, [
      el("span", { text: "Match" }),
      select([["all", "all"], ["any", "any"]], group.match, "Match", (e) => { group.match = e.target.value; changed(false); }),
      el("span", { text: "of these rules" }),
    ]);
    if (parent) {
      head.appendChild(el("button", { type: "button", class: "small", text: "Remove group", onclick: () => {
        parent.rules.splice(index, 1);
        changed(true);
      } }));
    }
    box.appendChild(head);
    if (!group.rules.length) {
      box.appendChild(el("p", { class: "muted small", text: parent ? "An empty group matches everyone." : "No rules: every contact matches. Add a rule to narrow it down." }));
    }
    group.rules.forEach((rule, i) => {
      const childPath = (path ? path + "." : "") + "rules[" + i + "]";
      box.appendChild(Array.isArray(rule.rules)
        ? renderGroup(rule, group, i, childPath, depth + 1, changed)
        : renderRule(rule, group, i, childPath, changed));
    });
    const buttons = el("div", { class: "rule-actions" }, [
      el("button", { type: "button", class: "small", text: "+ Rule", onclick: () => { group.rules.push(defaultRule()); changed(true); } }),
    ]);
    if (depth < MAX_DEPTH) {
      buttons.appendChild(el("button", { type: "button", class: "small", text: "+ Group", onclick: () => {
        group.rules.push({ match: group.match === "all" ? "any" : "all", rules: [defaultRule()] });
        changed(true);
      } }));
    }
    box.appendChild(buttons);
    return box;
  }

  function changed(rerender) {
    // The error from the last save described the tree before this edit: from now on the live
    // count reports on the tree as it is (and its paths may have shifted).
    const saveError = document.getElementById("rule-error");
    if (saveError) saveError.remove();
    // Render before serialising: rendering fills in defaults (the first operator, the first
    // status) that must reach the count and the save as they appear on screen.
    if (rerender) render();
    input.value = JSON.stringify(tree);
    document.body.dispatchEvent(new CustomEvent("rules-changed"));
  }

  function render() {
    root.replaceChildren(renderGroup(tree, null, 0, "", 0, changed));
    const list = el("datalist", { id: "segment-tags" });
    schema.tags.forEach((t) => list.appendChild(el("option", { value: t })));
    root.appendChild(list);
    markError();
  }

  // Outline the rule that the server named in its error: the live count's, else the one from
  // the save (until the first edit removes it).
  function markError() {
    root.querySelectorAll(".invalid").forEach((n) => n.classList.remove("invalid"));
    const error = document.querySelector("#segment-count [data-path]") || document.getElementById("rule-error");
    const path = error && error.getAttribute("data-path");
    if (path) {
      const node = root.querySelector('[data-path="' + path + '"]');
      if (node) node.classList.add("invalid");
    }
  }
  document.body.addEventListener("htmx:afterSwap", markError);

  render();
  input.value = JSON.stringify(tree);
})();
