"""The dataset card: YAML that lets ``load_dataset`` restore the features, and a readable body.

The YAML is written with ``datasets``' own serializers (``DatasetInfosDict`` and
``MetadataConfigs`` into a ``huggingface_hub.DatasetCardData``), so ``Nifti`` features come
back from the card even where Parquet metadata were stripped. The body is the maintainer's
prose (the generated repo's ``README.md``) with generated blocks filled in between markers::

    <!-- bids-hf:begin columns -->  ...generated...  <!-- bids-hf:end columns -->

so reruns refresh numbers and tables without touching what the maintainer wrote.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import datasets
from datasets.info import DatasetInfo, DatasetInfosDict
from datasets.splits import SplitDict, SplitInfo
from datasets.utils.metadata import MetadataConfigs
from huggingface_hub import DatasetCardData

from ._qc import mask_columns
from ._rows import RowSet
from ._util import human_bytes

BASE_TAGS = ("medical", "neuroimaging", "mri", "nifti", "bids")
_MARKER = re.compile(r"<!-- bids-hf:begin (\w+) -->.*?<!-- bids-hf:end \1 -->", re.DOTALL)
_FRONT_MATTER = re.compile(r"\A---\n.*?\n---\n", re.DOTALL)

# dataset_description.json "License" -> Hub license id.
_LICENSES = {
    "cc0": "cc0-1.0", "cc0-1.0": "cc0-1.0", "cc0 1.0": "cc0-1.0", "public domain": "cc0-1.0",
    "cc-by-4.0": "cc-by-4.0", "cc by 4.0": "cc-by-4.0", "cc-by": "cc-by-4.0",
    "cc-by-sa-4.0": "cc-by-sa-4.0", "cc by-sa 4.0": "cc-by-sa-4.0",
    "cc-by-nc-4.0": "cc-by-nc-4.0", "cc-by-nc-sa-4.0": "cc-by-nc-sa-4.0",
    "pddl": "pddl", "odc-by": "odc-by", "odbl": "odbl",
}

DEFAULT_SOURCE = """\
# {title}

<!-- bids-hf:begin summary -->
<!-- bids-hf:end summary -->

## About this dataset

Describe the cohort, acquisition and intended use here. This text is kept as written when
the card is regenerated.

<!-- bids-hf:begin columns -->
<!-- bids-hf:end columns -->

<!-- bids-hf:begin qc -->
<!-- bids-hf:end qc -->

<!-- bids-hf:begin usage -->
<!-- bids-hf:end usage -->

<!-- bids-hf:begin citation -->
<!-- bids-hf:end citation -->
"""


@dataclass(frozen=True)
class CardMeta:
    """Who the dataset is, as the maintainer declared it (builder class attributes)."""

    slug: str
    pretty_name: str | None = None
    license: str = "auto"  # "auto": mapped from dataset_description.json
    repo_id: str | None = None
    tags: tuple[str, ...] = ()
    gated: bool = False
    gated_prompt: str = ""


@dataclass
class StagedStats:
    """What was actually staged, measured: per split rows and bytes, Parquet sizes."""

    num_examples: dict[str, int] = field(default_factory=dict)
    num_bytes: dict[str, int] = field(default_factory=dict)  # bytes of embedded files + values
    download_size: int = 0  # total Parquet size
    shards: int = 0


def hub_license(meta: CardMeta, description: Mapping[str, Any]) -> tuple[str, str | None]:
    """(license id, license_name for 'other')."""
    if meta.license and meta.license != "auto":
        return meta.license, None
    written = str(description.get("License", "")).strip()
    mapped = _LICENSES.get(written.lower())
    if mapped:
        return mapped, None
    if not written:
        return "other", "unspecified"
    return "other", re.sub(r"[^a-z0-9]+", "-", written.lower()).strip("-")[:60] or "custom"


def card_data(rowset: RowSet, meta: CardMeta, stats: StagedStats) -> DatasetCardData:
    description = rowset.index.description
    license_id, license_name = hub_license(meta, description)
    data = DatasetCardData(
        license=license_id,
        pretty_name=meta.pretty_name or description.get("Name") or meta.slug,
        tags=sorted({*BASE_TAGS, *meta.tags}),
        size_categories=[_size_category(sum(stats.num_examples.values()))],
    )
    if license_name:
        data["license_name"] = license_name
    if mask_columns(list(rowset.image_columns)):
        data["task_categories"] = ["image-segmentation"]
    if meta.gated:
        data["extra_gated_prompt"] = meta.gated_prompt or (
            "This dataset contains medical images. Agree to use it only for research and not "
            "to attempt to identify participants.")
        data["extra_gated_fields"] = {
            "Name": "text", "Affiliation": "text",
            "I will not attempt to identify participants": "checkbox"}
    splits = rowset.splits
    infos: dict[str, DatasetInfo] = {"default": _info(rowset.features, stats, splits)}
    configs: dict[str, dict[str, Any]] = {
        "default": {"data_files": _data_files(splits), "default": True}}
    id_columns = [c for c in ("subject_id", "session_id") if c in rowset.features]
    for name, columns in rowset.schema.configs.items():
        selected = list(dict.fromkeys([*id_columns, *_expand(rowset, columns)]))
        features = datasets.Features({c: rowset.features[c] for c in selected})
        infos[name] = _info(features, stats, splits)
        configs[name] = {"data_files": _data_files(splits), "columns": selected}
    DatasetInfosDict(infos).to_dataset_card_data(data)
    MetadataConfigs(configs).to_dataset_card_data(data)
    return data


def _expand(rowset: RowSet, columns: list[str] | tuple[str, ...] | Any) -> list[str]:
    """A config naming ``dwi`` also gets ``dwi_bval``, ``dwi_run``...: its companion columns."""
    out: list[str] = []
    for col in columns:
        out.append(col)
        if col in rowset.image_columns:
            out += [f for f in rowset.features if f.startswith(f"{col}_")]
    return out


def _info(features: datasets.Features, stats: StagedStats, splits: list[str]) -> DatasetInfo:
    split_dict = SplitDict()
    for split in splits:
        split_dict.add(SplitInfo(name=split, num_bytes=stats.num_bytes.get(split, 0),
                                 num_examples=stats.num_examples.get(split, 0)))
    return DatasetInfo(features=features, splits=split_dict, download_size=stats.download_size,
                       dataset_size=sum(stats.num_bytes.values()))


def _data_files(splits: list[str]) -> list[dict[str, str]]:
    return [{"split": s, "path": f"data/{s}-*"} for s in splits]


def _size_category(n: int) -> str:
    for limit, label in ((1_000, "n<1K"), (10_000, "1K<n<10K"), (100_000, "10K<n<100K"),
                         (1_000_000, "100K<n<1M")):
        if n < limit:
            return label
    return "n>1M"


# -- body --------------------------------------------------------------------------------


def render_card(rowset: RowSet, meta: CardMeta, stats: StagedStats,
                source: str | None = None, extra_blocks: Mapping[str, str] | None = None) -> str:
    """The full README.md: YAML front matter + the source prose with generated blocks filled."""
    data = card_data(rowset, meta, stats)
    title = data.get("pretty_name") or meta.slug
    body = _FRONT_MATTER.sub("", source) if source else DEFAULT_SOURCE.format(title=title)
    blocks = {
        "summary": _summary(rowset, stats) + _source(rowset),
        "columns": _columns_table(rowset),
        "usage": _usage(rowset, meta),
        "citation": _citation(rowset.index.description),
        **(extra_blocks or {}),
    }

    def fill(match: re.Match[str]) -> str:
        name = match.group(1)
        content = blocks.get(name, "")
        return f"<!-- bids-hf:begin {name} -->\n{content.strip()}\n<!-- bids-hf:end {name} -->"

    body = _MARKER.sub(fill, body)
    return f"---\n{data.to_yaml()}\n---\n\n{body.lstrip()}"


def _summary(rowset: RowSet, stats: StagedStats) -> str:
    rows = sum(stats.num_examples.values())
    subjects = len({r.subject for r in rowset.rows})
    per = {"subject": "subject", "session": "session", "image": "image"}[rowset.schema.row]
    description = rowset.index.description
    lines = [
        (f"**{rows} rows** (one per {per}) from **{subjects} subjects**, "
         f"{human_bytes(stats.download_size)} of Parquet in {stats.shards} shard(s), with the "
         "NIfTI files embedded byte for byte."),
    ]
    if description.get("BIDSVersion"):
        lines.append(f"Converted from a BIDS {description['BIDSVersion']} dataset.")
    if len(stats.num_examples) > 1:
        lines.append("Splits: " + ", ".join(f"{s} ({n})" for s, n in stats.num_examples.items()) + ".")
    return "\n".join(lines)


def _columns_table(rowset: RowSet) -> str:
    lines = ["## Columns", "", "| column | type | from | non-empty |", "|---|---|---|---|"]
    schema = rowset.schema
    derived = _derived_columns(rowset)
    for name, feature in rowset.features.items():
        if name in rowset.image_columns:
            if schema.row == "image":
                source = "every claimed image"
            else:
                col = schema.image_columns[name]
                source = (col.description + " — " if col.description else "") + col.query.describe()
            count = sum(len(r.images.get(name, ())) for r in rowset.rows)
            unit = " files"
        elif name in derived:
            source, count, unit = f"aligned with `{derived[name]}`", _non_empty(rowset, name), ""
        elif name in schema.metadata_columns():
            source = next(f"{t} ({col})" if col != name else t
                          for t, cols in schema.metadata_spec().items()
                          for col, spec in cols.items() if spec.name == name)
            count, unit = _non_empty(rowset, name), ""
        else:
            source, count, unit = "the subject/session folder", len(rowset.rows), ""
        lines.append(f"| `{name}` | {_type_name(feature)} | {source.replace('|', '/')} "
                     f"| {count}{unit} |")
    lines.append("")
    lines.append("Image cells hold the file's bytes and its BIDS-relative `path`; "
                 "`n/a` in the source tables is null, every other value is kept as written.")
    return "\n".join(lines)


def _derived_columns(rowset: RowSet) -> dict[str, str]:
    """Companion, entity and sidecar columns -> the image column they are aligned with."""
    out: dict[str, str] = {}
    for image in sorted(rowset.image_columns, key=len, reverse=True):  # longest prefix wins
        for name in rowset.features:
            if name.startswith(f"{image}_") and name not in rowset.image_columns:
                out.setdefault(name, image)
    return out


def _non_empty(rowset: RowSet, name: str) -> int:
    return sum(r.values.get(name) not in (None, [], "") for r in rowset.rows)


def _type_name(feature: Any) -> str:
    text = repr(feature).replace("(decode=True)", "()")
    return text.replace("Value('", "").replace("')", "")


def _usage(rowset: RowSet, meta: CardMeta) -> str:
    repo = meta.repo_id or f"<org>/{meta.slug}"
    first = next(iter(rowset.image_columns))
    many = rowset.image_columns[first]
    access = f'row["{first}"][0]' if many else f'row["{first}"]'
    lines = [
        "## Usage", "", "```python", "from datasets import load_dataset", "",
        f'ds = load_dataset("{repo}", split="{rowset.splits[0]}")',
        "row = ds[0]",
        f"img = {access}          # a nibabel image",
        "volume = img.get_fdata()  # numpy array",
        "",
        "# Stream instead of downloading everything first:",
        f'ds = load_dataset("{repo}", split="{rowset.splits[0]}", streaming=True)',
        "print(next(iter(ds))[\"subject_id\"])",
    ]
    for name in rowset.schema.configs:
        lines += ["", f"# Only the columns of the '{name}' config:",
                  f'ds = load_dataset("{repo}", "{name}", split="{rowset.splits[0]}", streaming=True)']
    lines += ["```"]
    return "\n".join(lines)


def _source(rowset: RowSet) -> str:
    """Where the data come from: the BIDS dataset and every derivatives pipeline used."""
    description = rowset.index.description
    lines = ["", "", "| source | |", "|---|---|"]
    lines.append(f"| dataset | {description.get('Name', rowset.index.root.name)} "
                 f"({description.get('DatasetType', 'raw')}) |")
    used = sorted({f.pipeline for r in rowset.rows for _, f in r.files() if f.pipeline})
    for pipeline in used:
        meta = rowset.index.pipelines.get(pipeline, {})
        made_by = ", ".join(
            " ".join(str(g.get(k, "")) for k in ("Name", "Version")).strip()
            for g in meta.get("GeneratedBy", []) if isinstance(g, Mapping)) or "not stated"
        lines.append(f"| derivatives/{pipeline} | generated by {made_by} |")
    for key, label in (("EthicsApprovals", "ethics approvals"),
                       ("Acknowledgements", "acknowledgements")):
        value = description.get(key)
        if value:
            text = "; ".join(map(str, value)) if isinstance(value, list) else str(value)
            lines.append(f"| {label} | {text.replace('|', '/')} |")
    return "\n".join(lines)


def _citation(description: Mapping[str, Any]) -> str:
    parts: list[str] = []
    authors = description.get("Authors") or []
    if authors:
        parts.append("**Authors:** " + ", ".join(map(str, authors)))
    if description.get("DatasetDOI"):
        doi = str(description["DatasetDOI"])
        link = doi if doi.startswith("http") else f"https://doi.org/{doi.removeprefix('doi:')}"
        parts.append(f"**DOI:** [{doi}]({link})")
    if description.get("HowToAcknowledge"):
        parts.append(f"**How to acknowledge:** {description['HowToAcknowledge']}")
    refs = description.get("ReferencesAndLinks") or []
    if refs:
        parts.append("**References:**\n" + "\n".join(f"- {r}" for r in refs))
    if description.get("Funding"):
        parts.append("**Funding:** " + "; ".join(map(str, description["Funding"])))
    if not parts:
        return ""
    return "## Citation\n\n" + "\n\n".join(parts)
