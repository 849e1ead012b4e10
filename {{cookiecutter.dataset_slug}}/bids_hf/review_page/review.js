// The review page: the rows as the schema assembles them, and one row's images in NiiVue.
// Data come from rows.json; images from files/<BIDS path>; thumbnails from thumbs/<BIDS path>.
// NiiVue is loaded on first use, so the list works even where the viewer is not installed.

const $ = (id) => document.getElementById(id);
const state = { data: null, open: -1, niivue: null, nv: null, mode: "multi", background: null };

function el(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(props)) {
    if (k === "class") node.className = v;
    else if (k === "dataset") Object.assign(node.dataset, v);
    else if (k in node) node[k] = v;
    else node.setAttribute(k, v);
  }
  for (const child of children) if (child !== null && child !== undefined) node.append(child);
  return node;
}

const encodePath = (path) => path.split("/").map(encodeURIComponent).join("/");
const fileUrl = (path) => "files/" + encodePath(path);
const thumbUrl = (path) => "thumbs/" + encodePath(path);
const baseName = (path) => path.slice(path.lastIndexOf("/") + 1);
const rowLabel = (row) => "sub-" + row.subject + (row.session ? " ses-" + row.session : "");

function severityBadge(severity) {
  return el("span", { class: "sev " + severity, textContent: severity });
}

function findingText(f) {
  return f.check + ": " + f.message;
}

// -- the list ------------------------------------------------------------------------------

function renderHeader(data) {
  const tr = el("tr", {}, el("th", { textContent: "row" }), el("th", { textContent: "findings" }),
                el("th", { textContent: "split" }));
  for (const name of data.value_columns) tr.append(el("th", { textContent: name }));
  for (const col of data.image_columns) {
    tr.append(el("th", { textContent: col.name, class: col.mask ? "mask" : "",
                         title: col.mask ? "mask or segmentation" : "image" }));
  }
  document.querySelector("#rows thead").replaceChildren(tr);
}

function thumbCell(row, column) {
  const images = row.images.filter((i) => i.column === column.name);
  const td = el("td", { class: "thumb" });
  if (images.length === 0) {
    td.append(el("span", { class: "none", textContent: "—" }));
    return td;
  }
  const first = images[0];
  if (first.missing) {
    td.append(el("span", { class: "broken", textContent: "missing", title: first.missing }));
    return td;
  }
  const img = el("img", { src: thumbUrl(first.path), alt: baseName(first.path),
                          title: first.path, loading: "lazy" });
  img.addEventListener("error", () => img.replaceWith(
    el("span", { class: "broken", textContent: "unreadable", title: first.path })));
  td.append(img);
  if (images.length > 1) td.append(el("span", { class: "n", textContent: "×" + images.length }));
  return td;
}

function findingsCell(data, row) {
  const td = el("td", { class: "findings" });
  for (const k of row.findings) {
    const f = data.findings[k];
    td.append(el("div", { title: f.message }, severityBadge(f.severity), findingText(f)));
  }
  return td;
}

function renderRows(data) {
  const body = document.querySelector("#rows tbody");
  body.replaceChildren();
  data.rows.forEach((row, r) => {
    const tr = el("tr", { dataset: { key: row.key, row: String(r) } });
    tr.append(el("td", { class: "key" }, "sub-" + row.subject,
                 row.session ? el("small", { textContent: "ses-" + row.session }) : null));
    tr.append(findingsCell(data, row));
    tr.append(el("td", { textContent: row.split }));
    for (const name of data.value_columns) {
      const v = row.values[name];
      tr.append(el("td", { textContent: v === null || v === undefined ? "n/a" : String(v) }));
    }
    for (const col of data.image_columns) tr.append(thumbCell(row, col));
    tr.addEventListener("click", () => openRow(r));
    body.append(tr);
  });
}

function renderPageFindings(data) {
  const list = $("page-findings-list");
  const groups = new Map();
  for (const k of data.page_findings) {
    const f = data.findings[k];
    if (!groups.has(f.check)) groups.set(f.check, []);
    groups.get(f.check).push(f);
  }
  for (const [check, items] of groups) {
    const worst = ["error", "warning", "info"].find((s) => items.some((f) => f.severity === s));
    const summary = el("summary", {}, severityBadge(worst), items.length + " × " + check);
    const ul = el("ul");
    for (const f of items) ul.append(el("li", { textContent: (f.path ? f.path + ": " : "") + f.message }));
    list.append(el("details", {}, summary, ul));
  }
  $("page-findings").hidden = groups.size === 0;
}

function renderTotals(data) {
  const count = (s) => data.findings.filter((f) => f.severity === s).length;
  const parts = [data.rows.length + " rows", count("error") + " errors",
                 count("warning") + " warnings", count("info") + " notes"];
  $("totals").textContent = parts.join(" · ");
  $("source").textContent = "Images from the " + data.source.kind + " " + data.source.name +
    (data.source.kind === "staged folder" ? " (the bytes that will be published)" : "");
}

// -- the viewer ----------------------------------------------------------------------------

async function viewer() {
  if (state.nv) return state.nv;
  if (!state.data.viewer) return null;
  const niivue = await import("./niivue.js");
  const nv = new niivue.Niivue({
    backColor: [0, 0, 0, 1],
    show3Dcrosshair: true,
    crosshairColor: [0.3, 0.85, 1, 0.45], // visible, without hiding the anatomy under it
    multiplanarShowRender: niivue.SHOW_RENDER.ALWAYS,
    multiplanarLayout: niivue.MULTIPLANAR_TYPE.GRID,
    dragAndDropEnabled: false,
    isColorbar: false,
    logLevel: "warn",
  });
  await nv.attachToCanvas($("gl"));
  nv.overlayOutlineWidth = 0.25; // masks as an outline over a translucent fill
  state.niivue = niivue;
  state.nv = nv;
  return nv;
}

function chooseBackground(row) {
  const usable = row.images.filter((i) => !i.missing);
  return usable.find((i) => i.datatype === "anat" && !i.mask) ||
    usable.find((i) => !i.mask) || usable[0] || null;
}

function renderChips(row) {
  const box = $("chips");
  box.replaceChildren();
  for (const image of row.images) {
    const label = image.column + (row.images.filter((i) => i.column === image.column).length > 1
      ? " " + (image.item + 1) : "");
    const b = el("button", { type: "button", textContent: label, title: image.path,
                             class: (image.mask ? "mask " : "") +
                               (state.background && image.path === state.background.path ? "on" : ""),
                             disabled: Boolean(image.missing) });
    b.addEventListener("click", () => showImages(row, image));
    box.append(b);
  }
}

function renderDetails(data, row) {
  const plain = "sub-" + row.subject + (row.session ? "_ses-" + row.session : "");
  $("row-title").textContent = rowLabel(row) + (row.key === plain ? "" : "  ·  " + row.key);
  const list = $("row-findings");
  list.replaceChildren();
  for (const k of row.findings) {
    const f = data.findings[k];
    list.append(el("li", {}, severityBadge(f.severity), findingText(f)));
  }
  const dl = $("row-details");
  dl.replaceChildren();
  for (const [name, value] of Object.entries({ ...row.values, ...row.details })) {
    dl.append(el("dt", { textContent: name }),
              el("dd", { textContent: value === null ? "n/a" : String(value) }));
  }
}

async function showImages(row, background) {
  state.background = background;
  renderChips(row);
  const status = $("viewer-status");
  delete document.body.dataset.viewerReady;
  if (!background) {
    status.textContent = "This row has no image to show.";
    return;
  }
  const nv = await viewer();
  if (!nv) return;
  const volumes = [{ url: fileUrl(background.path), name: baseName(background.path),
                     colormap: background.mask ? "red" : "gray" }];
  if (!background.mask) {
    for (const m of row.images.filter((i) => i.mask && !i.missing)) {
      volumes.push({ url: fileUrl(m.path), name: baseName(m.path), colormap: "red", opacity: 0.5 });
    }
  }
  status.textContent = "Loading " + volumes.map((v) => v.name).join(", ") + " …";
  try {
    await nv.loadVolumes(volumes);
  } catch (err) {
    status.textContent = "NiiVue could not load " + background.path + ": " + err;
    return;
  }
  if (state.background !== background) return; // another image was asked for meanwhile
  await setMode(state.mode);
  const shown = volumes.length > 1 ? " with " + (volumes.length - 1) + " mask(s) overlaid" : "";
  status.textContent = background.path + shown +
    ". Drag to move the crosshair; drag the 3D view to turn the head (look for a face).";
  // Tests wait for this (an attribute, not a global: the page's CSP forbids their eval).
  document.body.dataset.viewerReady = row.key;
  document.body.dataset.volumes = String(nv.volumes.length);
}

async function setMode(mode) {
  state.mode = mode;
  for (const b of document.querySelectorAll(".modes button")) {
    b.classList.toggle("on", b.dataset.mode === mode);
  }
  const nv = state.nv;
  if (!nv) return;
  const types = state.niivue.SLICE_TYPE;
  nv.setSliceType(mode === "render" ? types.RENDER : types.MULTIPLANAR);
  nv.setRenderAzimuthElevation(150, 15); // from the front, a little left: a face left on shows
  nv.drawScene();
  await new Promise((done) => requestAnimationFrame(() => requestAnimationFrame(done)));
  document.body.dataset.mode = mode;
}

async function openRow(r) {
  const data = state.data;
  if (r < 0 || r >= data.rows.length) return;
  state.open = r;
  for (const tr of document.querySelectorAll("#rows tbody tr")) {
    tr.classList.toggle("open", tr.dataset.row === String(r));
  }
  document.querySelector(`#rows tbody tr[data-row="${r}"]`).scrollIntoView({ block: "nearest" });
  const row = data.rows[r];
  $("viewer-empty").hidden = true;
  $("viewer-body").hidden = false;
  renderDetails(data, row);
  await showImages(row, chooseBackground(row));
}

async function main() {
  const response = await fetch("rows.json", { cache: "no-store" });
  const data = await response.json();
  state.data = data;
  document.title = "Review: " + data.title;
  $("title").textContent = "Review before publishing: " + data.title;
  renderTotals(data);
  renderHeader(data);
  renderRows(data);
  renderPageFindings(data);
  if (!data.viewer) {
    $("viewer-help").textContent = data.viewer_help;
    $("viewer-help").hidden = false;
  }
  for (const b of document.querySelectorAll(".modes button")) {
    b.addEventListener("click", () => setMode(b.dataset.mode));
  }
  document.addEventListener("keydown", (event) => {
    if (event.target.closest && event.target.closest("input, textarea")) return;
    if (event.key === "ArrowDown" || event.key === "j") openRow(state.open + 1);
    else if (event.key === "ArrowUp" || event.key === "k") openRow(Math.max(0, state.open - 1));
    else return;
    event.preventDefault();
  });
  document.body.dataset.rows = String(data.rows.length);
}

main();
