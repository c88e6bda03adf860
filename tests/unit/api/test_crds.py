"""The CRD manifests are generated from tsgw.api and the committed copy must match them."""

import pathlib
import re

import pytest
import yaml

from tsgw.api import DERIVED_KINDS, GROUP, KINDS, crd_files, crds
from tsgw.cli import main

ROOT = pathlib.Path(__file__).resolve().parents[3]
CRD_DIR = ROOT / "deploy" / "kustomize" / "base" / "crds"


def test_committed_crds_match_the_python_types() -> None:
    committed = {p.name: p.read_text() for p in sorted(CRD_DIR.iterdir())}
    generated = crd_files()
    stale = sorted(n for n in generated.keys() | committed.keys() if generated.get(n) != committed.get(n))
    assert not stale, f"run `tsgw crds --write deploy/kustomize/base/crds`; stale: {stale}"


def test_every_kind_has_status_subresource_short_names_and_the_tailscale_category() -> None:
    for c in crds():
        names = c["spec"]["names"]
        version = c["spec"]["versions"][0]
        assert names["categories"] == ["tailscale"]
        assert names["shortNames"]
        assert version["subresources"] == {"status": {}}
        assert c["metadata"]["name"] == f"{names['plural']}.{GROUP}"
    assert [c["spec"]["scope"] for c in crds()] == ["Cluster"] + ["Namespaced"] * 5


def test_short_names_are_unique_across_kinds() -> None:
    shorts = [s for k in (*KINDS, *DERIVED_KINDS) for s in k.short_names]
    assert len(shorts) == len(set(shorts))


def test_printer_columns_point_at_fields_that_exist_in_the_schema() -> None:
    for c in crds():
        version = c["spec"]["versions"][0]
        root = version["schema"]["openAPIV3Schema"]
        for col in version["additionalPrinterColumns"]:
            path = re.sub(r"\[\?\(.*?\)\]", "[*]", col["jsonPath"])
            if path == ".metadata.creationTimestamp":
                continue
            node = root
            for part in path.lstrip(".").split("."):
                name = part.split("[")[0]
                if not name:
                    continue
                node = node["properties"][name]
                if node.get("type") == "array" and "[" in part:
                    node = node["items"]
            assert node.get("type") == col["type"] or col["type"] == "string", (path, node)


def test_tsgw_crds_prints_every_crd_as_multi_document_yaml(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["crds"]) == 0
    docs = [d for d in yaml.safe_load_all(capsys.readouterr().out) if d]
    assert [d["spec"]["names"]["kind"] for d in docs] == [k.kind for k in (*KINDS, *DERIVED_KINDS)]


def test_tsgw_crds_write_produces_the_committed_tree(tmp_path: pathlib.Path) -> None:
    assert main(["crds", "--write", str(tmp_path)]) == 0
    assert {p.name: p.read_text() for p in tmp_path.iterdir()} == crd_files()
