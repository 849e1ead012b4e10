"""The review page: the safe local server, images from the tree or from the staged Parquet
shards, and the page itself in headless Chromium."""

from __future__ import annotations

import http.client
import io
import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq
import pytest
from bids_hf._index import index_bids
from bids_hf._review import ReviewServer, serve_review
from bids_hf._review_page import VIEWER_ENV, ReviewFinding, find_viewer
from bids_hf._review_sources import ReviewError
from bids_hf._rows import RowSet, assemble_rows
from conftest import TEMPLATE_ROOT, load_schema, run_pipeline
from PIL import Image

from examples.cohorts import make_arc

SCREENSHOT = TEMPLATE_ROOT / "docs" / "review.png"


# -- the server ----------------------------------------------------------------------------


def http_request(server: ReviewServer, target: str, *, method: str = "GET",
            host: str | None = None) -> tuple[int, bytes, http.client.HTTPMessage]:
    """One raw HTTP request: the target is sent exactly as given (no normalisation)."""
    address = server.url.removeprefix("http://").rstrip("/")
    name, port = address.split(":")
    connection = http.client.HTTPConnection(name, int(port), timeout=30)
    try:
        connection.putrequest(method, target, skip_host=True, skip_accept_encoding=True)
        connection.putheader("Host", host or address)
        connection.endheaders()
        response = connection.getresponse()
        return response.status, response.read(), response.headers
    finally:
        connection.close()


@pytest.fixture
def served() -> Iterator[list[ReviewServer]]:
    """Servers started by a test, shut down after it whatever happens."""
    servers: list[ReviewServer] = []
    yield servers
    for server in servers:
        server.shutdown()


def start(servers: list[ReviewServer], rowset: RowSet, findings: list[ReviewFinding] | None = None,
          **kwargs: Any) -> ReviewServer:
    server = serve_review(rowset, findings or [], **kwargs).start()
    servers.append(server)
    return server


@pytest.fixture(scope="module")
def arc_rowset(arc_tree: Path) -> RowSet:
    return assemble_rows(index_bids(arc_tree), load_schema("arc"))


def rows_json(server: ReviewServer) -> dict[str, Any]:
    status, body, headers = http_request(server, "/rows.json")
    assert status == 200 and headers["Content-Type"] == "application/json"
    return json.loads(body)


def test_the_page_lists_every_row_with_its_findings(arc_rowset: RowSet,
                                                    served: list[ReviewServer]) -> None:
    first, second = arc_rowset.rows[:2]
    t1w = first.images["t1w"][0].path
    scans = f"sub-{second.subject}/ses-{second.session}/sub-{second.subject}_ses-" \
            f"{second.session}_scans.tsv"
    findings = [
        ReviewFinding(t1w.replace(".nii.gz", ".json"), None, "warning", "site fields",
                      "InstitutionName is set"),
        ReviewFinding(None, second.key, "error", "privacy", "PatientName is set"),
        ReviewFinding(scans, None, "error", "privacy", "acq_time holds a real date"),
        ReviewFinding(f"sub-{first.subject}/anat/sub-{first.subject}_T2star.nii.gz", None, "info",
                      "unclaimed", "no column claims it"),
        ReviewFinding(None, None, "info", "unclaimed", "12 NIfTI unclaimed"),
    ]
    server = start(served, arc_rowset, findings)
    assert server.url.startswith("http://127.0.0.1:")
    data = rows_json(server)
    assert [r["key"] for r in data["rows"]] == [r.key for r in arc_rowset.rows]
    assert data["rows"][0]["findings"] == [0]
    assert data["rows"][1]["findings"] == [1, 2]
    assert data["page_findings"] == [3, 4]  # an unclaimed NIfTI is no row's file
    assert all(not r["findings"] for r in data["rows"][2:])
    for row, shown in zip(arc_rowset.rows, data["rows"], strict=True):
        assert [i["path"] for i in shown["images"]] == [f.path for _, f in row.files()]
        assert all(i["missing"] is None for i in shown["images"])
        assert shown["values"]["wab_type"] == row.values["wab_type"]  # "None" stays a text
    assert {"age_at_stroke", "sex", "wab_type"} <= set(data["value_columns"])
    assert "dwi_bval" in data["rows"][0]["details"]  # long lists go to the row's details
    masks = {c["name"]: c["mask"] for c in data["image_columns"]}
    assert masks["lesion"] and not masks["t1w"]
    status, page, headers = http_request(server, "/")
    assert status == 200 and b'src="assets/review.js"' in page
    assert "default-src 'self'" in headers["Content-Security-Policy"]
    assert http_request(server, "/assets/review.js")[0] == 200


def test_thumbnails_are_slices_of_the_images(arc_rowset: RowSet,
                                             served: list[ReviewServer]) -> None:
    server = start(served, arc_rowset)
    row = next(r for r in arc_rowset.rows if r.images["lesion"])
    for column in ("t1w", "lesion"):
        status, body, headers = http_request(server, "/thumbs/" + row.images[column][0].path)
        assert status == 200 and headers["Content-Type"] == "image/png"
        with Image.open(io.BytesIO(body)) as png:
            assert png.format == "PNG" and max(png.size) == 96
            pixels = np.asarray(png.convert("L"))
        assert pixels.std() > 20, f"{column}: a uniform thumbnail"
        if column == "lesion":  # through the mask's centre, so the mask shows
            assert (pixels == 255).sum() > 50


def test_staged_images_are_the_parquet_bytes(arc_copy: Path, tmp_path: Path,
                                             served: list[ReviewServer],
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    schema = load_schema("arc")
    staged = run_pipeline(arc_copy, schema, tmp_path / "staged")
    row = next(r for r in staged.rowset.rows if r.images["lesion"] and len(r.images["t1w"]) > 1)
    t1w, lesion = row.images["t1w"][1].path, row.images["lesion"][0].path
    # The tree changes after staging: the page must show what will be published.
    (arc_copy / t1w).write_bytes((arc_copy / row.images["t1w"][0].path).read_bytes())
    cells: dict[str, bytes] = {}
    for shard in sorted((staged.out / "data").glob("*.parquet")):
        for record in pq.read_table(shard, columns=["t1w", "lesion"]).to_pylist():
            for cell in [*record["t1w"], record["lesion"]]:
                if cell:
                    cells[cell["path"]] = cell["bytes"]
    reads: list[list[str]] = []
    real = pq.ParquetFile.read_row_group

    def recorded(self: pq.ParquetFile, i: int, columns: list[str] | None = None,
                 **kwargs: Any) -> Any:
        reads.append(list(columns or ["<every column>"]))
        return real(self, i, columns=columns, **kwargs)

    monkeypatch.setattr(pq.ParquetFile, "read_row_group", recorded)
    rowset = assemble_rows(index_bids(arc_copy), schema)
    server = start(served, rowset, staged=staged.out)
    opened = [c for columns in reads for c in columns]
    assert opened and all(c in ("subject_id", "session_id") or c.endswith(".path")
                          for c in opened), opened
    data = rows_json(server)
    assert data["source"] == {"kind": "staged folder", "name": "staged"}
    assert all(i["missing"] is None for r in data["rows"] for i in r["images"])
    for path in (t1w, lesion):
        reads.clear()
        status, body, _ = http_request(server, "/files/" + path)
        assert status == 200 and body == cells[path]
        assert len(reads) == 1 and len(reads[0]) == 1 and reads[0][0].endswith(".bytes")
    assert cells[t1w] != (arc_copy / t1w).read_bytes()
    assert http_request(server, "/thumbs/" + lesion)[0] == 200


def test_rows_missing_from_the_staged_folder_are_findings(arc_copy: Path, tmp_path: Path,
                                                          served: list[ReviewServer]) -> None:
    schema = load_schema("arc")
    staged = run_pipeline(arc_copy, schema, tmp_path / "staged")
    extra = arc_copy / "sub-M9999" / "ses-1" / "anat" / "sub-M9999_ses-1_run-1_T1w.nii.gz"
    extra.parent.mkdir(parents=True)
    shutil.copy(arc_copy / staged.rowset.rows[0].images["t1w"][0].path, extra)
    rowset = assemble_rows(index_bids(arc_copy), schema)
    data = rows_json(start(served, rowset, staged=staged.out))
    new = next(r for r in data["rows"] if r["key"] == "sub-M9999_ses-1")
    checks = {data["findings"][k]["check"] for k in new["findings"]}
    assert checks == {"row staged", "image available"}
    assert new["images"][0]["missing"] == "not in the staged Parquet files"
    with pytest.raises(ReviewError, match=r"no data/\*\.parquet"):
        serve_review(rowset, staged=tmp_path / "nothing-staged")


def test_the_server_serves_only_what_the_rows_reference(arc_copy: Path, tmp_path: Path,
                                                        served: list[ReviewServer]) -> None:
    rowset = assemble_rows(index_bids(arc_copy), load_schema("arc"))
    images = [f.path for row in rowset.rows for _, f in row.files()]
    outside, annexed, kept = images[0], images[1], images[2]
    # A symlink that leaves the tree, and one into the tree's own annex (as DataLad makes).
    secret = tmp_path / "secret.nii.gz"
    shutil.copy(arc_copy / outside, secret)
    (arc_copy / outside).unlink()
    (arc_copy / outside).symlink_to(secret)
    annex = arc_copy / ".git" / "annex" / "objects" / "ab" / "key.nii.gz"
    annex.parent.mkdir(parents=True)
    shutil.move(arc_copy / annexed, annex)
    (arc_copy / annexed).symlink_to(os.path.relpath(annex, (arc_copy / annexed).parent))
    rowset = assemble_rows(index_bids(arc_copy), load_schema("arc"))
    assert {outside, annexed} <= {f.path for row in rowset.rows for _, f in row.files()}
    server = start(served, rowset)

    assert http_request(server, "/files/" + kept)[1] == (arc_copy / kept).read_bytes()
    assert http_request(server, "/files/" + annexed)[1] == annex.read_bytes()
    assert http_request(server, "/files/" + kept, method="HEAD")[0] == 200
    refused = [
        "/files/" + outside,  # a symlink out of the tree
        "/thumbs/" + outside,
        "/files/participants.tsv",  # in the tree, but no row's image
        "/files/dataset_description.json",
        f"/files/{kept}/../../../participants.tsv",
        "/files/../dataset_description.json",
        "/files/%2e%2e/%2e%2e/etc/passwd",
        "/files//etc/passwd",
        "/files/" + str(arc_copy / kept),  # absolute
        "/files/" + str(arc_copy / kept).lstrip("/"),
        "/files/" + kept.replace("/", "\\"),
        "/files/./" + kept,
        "/thumbs/../rows.json",
        "/assets/../_review.py",
        "/assets/%2e%2e/_review.py",
        "/_review.py",
        "/etc/passwd",
    ]
    for target in refused:
        status, body, _ = http_request(server, target)
        assert status == 404, f"{target}: {status} {body[:80]!r}"
    data = rows_json(server)
    broken = next(i for r in data["rows"] for i in r["images"] if i["path"] == outside)
    assert broken["missing"] == "not a readable file inside the dataset folder"
    assert any(f["check"] == "image available" and f["path"] == outside
               for f in data["findings"])
    for method in ("POST", "PUT", "DELETE"):
        assert http_request(server, "/files/" + kept, method=method)[0] == 405
    # Another site's page reaching 127.0.0.1 through its own DNS name is refused.
    assert http_request(server, "/rows.json", host="attacker.example:80")[0] == 403


def test_the_server_binds_only_the_loopback_address(arc_rowset: RowSet,
                                                    served: list[ReviewServer]) -> None:
    for host in ("0.0.0.0", "192.168.1.10", "::", "example.org"):
        with pytest.raises(ReviewError, match="loopback"):
            serve_review(arc_rowset, host=host)
    server = start(served, arc_rowset, host="localhost")
    assert server.url.startswith("http://127.0.0.1:")


def test_without_niivue_the_page_says_what_to_install(arc_rowset: RowSet, tmp_path: Path,
                                                      served: list[ReviewServer],
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(VIEWER_ENV, str(tmp_path / "no-such-niivue"))
    assert find_viewer() is None
    server = start(served, arc_rowset)
    data = rows_json(server)
    assert data["viewer"] is False and "npm ci" in data["viewer_help"]
    assert http_request(server, "/assets/niivue.js")[0] == 404
    package = tmp_path / "niivue"
    (package / "dist").mkdir(parents=True)
    (package / "dist" / "index.js").write_text("export class Niivue {}\n")
    monkeypatch.setenv(VIEWER_ENV, str(package))
    server = start(served, arc_rowset)
    assert http_request(server, "/assets/niivue.js")[1] == b"export class Niivue {}\n"


# -- in a browser --------------------------------------------------------------------------

CHROMIUM_ARGS = [
    "--no-sandbox",  # root in CI
    "--use-angle=swiftshader", "--enable-unsafe-swiftshader",  # WebGL2 without a GPU
    # The network is closed: no background connections to hang on.
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--no-first-run", "--disable-quic",
]


@pytest.fixture(scope="module")
def chromium() -> Iterator[Any]:
    """Debian's Chromium driven by Playwright; skips (fails under REQUIRE_BROWSER=1) when
    Chromium, Playwright or NiiVue is missing."""
    def missing(reason: str) -> None:
        if os.environ.get("REQUIRE_BROWSER") == "1":
            pytest.fail(f"REQUIRE_BROWSER=1 but {reason}")
        pytest.skip(reason)

    executable = os.environ.get("CHROMIUM") or shutil.which("chromium") \
        or shutil.which("chromium-browser")
    if executable is None:
        missing("no Chromium here (apt-get install chromium)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        missing("Playwright is not installed (pip install playwright)")
    if find_viewer() is None:
        missing("NiiVue is not installed (npm ci in the template's folder)")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


def canvas_pixels(page: Any) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(page.locator("#gl").screenshot())).convert("RGB"))


def drawn(pixels: np.ndarray) -> float:
    """The share of pixels that are not the black background."""
    return float((pixels.max(axis=2) > 30).mean())


def open_row(page: Any, key: str) -> None:
    page.locator(f'#rows tbody tr[data-key="{key}"]').click()
    page.wait_for_selector(f'body[data-viewer-ready="{key}"]', state="attached", timeout=30_000)
    page.wait_for_selector("body[data-mode]", state="attached")


@pytest.mark.browser
def test_review_page_in_chromium(chromium: Any, tmp_path: Path,
                                 served: list[ReviewServer]) -> None:
    tree = make_arc(tmp_path / "ds004884", subjects=4, shape=(48, 56, 48))
    rowset = assemble_rows(index_bids(tree), load_schema("arc"))
    first = next(r for r in rowset.rows if r.images["lesion"])
    findings = [
        ReviewFinding(first.images["t1w"][0].path.replace(".nii.gz", ".json"), None, "warning",
                      "site fields", "InstitutionName: Example Hospital"),
        ReviewFinding(None, rowset.rows[-1].key, "error", "privacy",
                      "AcquisitionDateTime holds a real date"),
        *(ReviewFinding(f"sub-M2001/anat/sub-M2001_run-{k}_T2starw.nii.gz", None, "info",
                        "unclaimed NIfTI", "no column claims it") for k in (1, 2, 3)),
    ]
    server = start(served, rowset, findings)
    page = chromium.new_page(viewport={"width": 1500, "height": 940})
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.goto(server.url)
    page.wait_for_selector("#rows tbody tr[data-key]")
    listed = [tr.get_attribute("data-key") for tr in page.query_selector_all("#rows tbody tr")]
    assert listed == [r.key for r in rowset.rows]
    assert "3 × unclaimed NIfTI" in page.inner_text("#page-findings")
    row_text = page.inner_text(f'#rows tbody tr[data-key="{first.key}"]')
    assert "InstitutionName: Example Hospital" in row_text

    open_row(page, first.key)
    assert page.get_attribute("body", "data-volumes") == "2"  # the T1w and its lesion mask
    page.wait_for_timeout(300)  # let lazy thumbnails of the visible rows arrive
    shot = page.screenshot()
    (tmp_path / "review.png").write_bytes(shot)
    if os.environ.get("UPDATE_REVIEW_SCREENSHOT") == "1":
        SCREENSHOT.parent.mkdir(exist_ok=True)
        SCREENSHOT.write_bytes(shot)
    pixels = canvas_pixels(page)
    assert pixels.std() > 20 and len(np.unique(pixels.reshape(-1, 3), axis=0)) > 50
    height, width = pixels.shape[:2]
    for name, tile in (("top left", pixels[:height // 2, :width // 2]),
                       ("top right", pixels[:height // 2, width // 2:]),
                       ("bottom left", pixels[height // 2:, :width // 2]),
                       ("3D render", pixels[height // 2:, width // 2:])):
        assert drawn(tile) > 0.05, f"{name} tile of the multiplanar view is blank"
    red = (pixels[..., 0] > 150) & (pixels[..., 1] < 120) & (pixels[..., 2] < 120)
    assert red.sum() > 30, "the lesion mask is not overlaid"

    page.click('.modes button[data-mode="render"]')
    page.wait_for_selector('body[data-mode="render"]', state="attached")
    render = canvas_pixels(page)
    centre = render[height // 4:3 * height // 4, width // 4:3 * width // 4]
    assert drawn(centre) > 0.5 and centre.std() > 10, "the 3D render of the T1w is not drawn"
    assert not errors, errors


@pytest.mark.browser
def test_review_page_shows_the_staged_bytes(chromium: Any, arc_copy: Path, tmp_path: Path,
                                            served: list[ReviewServer]) -> None:
    staged = run_pipeline(arc_copy, load_schema("arc"), tmp_path / "staged")
    server = start(served, staged.rowset, staged=staged.out)
    page = chromium.new_page(viewport={"width": 1200, "height": 900})
    page.goto(server.url)
    page.wait_for_selector("#rows tbody tr[data-key]")
    assert "staged folder staged" in page.inner_text("#source")
    key = staged.rowset.rows[0].key
    open_row(page, key)
    pixels = canvas_pixels(page)
    assert drawn(pixels) > 0.05 and pixels.std() > 20


def test_the_generated_repo_pins_the_viewer_the_template_tests() -> None:
    generated = TEMPLATE_ROOT / "{{cookiecutter.dataset_slug}}"
    for name in ("package.json", "package-lock.json"):
        ours = json.loads((TEMPLATE_ROOT / name).read_text())
        theirs = json.loads((generated / name).read_text())
        assert ours["dependencies" if name == "package.json" else "packages"] == \
            theirs["dependencies" if name == "package.json" else "packages"], name
    lock = json.loads((generated / "package-lock.json").read_text())
    assert lock["packages"]["node_modules/@niivue/niivue"]["integrity"].startswith("sha512-")


@pytest.mark.parametrize(("schema", "tree"), [("isles24", "isles_tree"),
                                              ("aomic_piop1", "aomic_tree")])
def test_every_reference_schema_reviews_from_its_staged_folder(
        schema: str, tree: str, request: pytest.FixtureRequest, tmp_path: Path,
        served: list[ReviewServer]) -> None:
    staged = run_pipeline(request.getfixturevalue(tree), load_schema(schema), tmp_path / schema)
    server = start(served, staged.rowset, staged=staged.out)
    data = rows_json(server)
    assert [r["key"] for r in data["rows"]] == [r.key for r in staged.rowset.rows]
    images = [i for r in data["rows"] for i in r["images"]]
    assert images and all(i["missing"] is None for i in images)
    assert not [f for f in data["findings"] if f["check"] in ("row staged", "image available")]
    status, body, _ = http_request(server, "/files/" + images[-1]["path"])
    assert status == 200 and body[:2] == b"\x1f\x8b"
