"""The seeded planted grid end to end at the CI size (2 variants, 4 models per algorithm): every
variant's planted run and no-plant twin go through the real study pipeline, and the grid's records
are what its summaries say. Asserted: the harness logic (the variants are the seed's draws, a finding
is counted only when the twin does not confirm it, the rates are the records' shares), not the
discovery's success. The exposure-matched twin runs on the same grid and its records are its twins'."""
import json

import pytest

from benchmarks.exposure_twin import main as exposure_main
from benchmarks.planted_grid import main
from case_studies.planted.grid import draw_variants, rates


@pytest.mark.slow
def test_grid_runs_two_small_variants_with_their_twins(tmp_path, capsys):
    assert main(["--variants", "2", "--seed", "3", "--models", "4", "--small", "--out", str(tmp_path)]) == 0
    result = json.loads((tmp_path / "planted_grid.json").read_text())
    assert result["variants"] == draw_variants(2, 3)
    records = result["records"]
    assert [r["variant"] for r in records] == [0, 1]
    for v, r in zip(result["variants"], records):
        summary = json.loads((tmp_path / f"variant_{v['variant']}" / "summary.json").read_text())
        assert summary["planted"]["region"] == v["region"] and summary["planted"]["target_class"] == v["target_class"]
        assert (tmp_path / f"variant_{v['variant']}" / "twin" / "summary.json").is_file()
        assert r["twin_match"] == summary["twin"]["confirms_at_plant"]
        assert r["counted_top3"] == (r["top3_match"] and not r["twin_match"])
        assert r["a_reliance"] == summary["planted"]["reliance"]["a"]
    expected = rates(records)
    for key, value in result["rates"].items():  # NaN (no variant where A relies) equals NaN here
        assert value == expected[key] or (value != value and expected[key] != expected[key]), key
    out = capsys.readouterr().out
    assert out.count("\n") >= 4 and "twin confirms at the planted place/class" in out
    # the exposure-matched twin: as many pattern-carrying training images as the plant, from every class
    assert exposure_main(["--grid", str(tmp_path), "--variants", "2", "--seed", "3"]) == 0
    exposure = json.loads((tmp_path / "exposure_twin.json").read_text())
    assert [r["variant"] for r in exposure["records"]] == [0, 1]
    for v, r, g in zip(result["variants"], exposure["records"], records):
        entry = json.loads((tmp_path / f"variant_{v['variant']}" / "twin_exposure" / "entry.json").read_text())
        summary = json.loads((tmp_path / f"variant_{v['variant']}" / "summary.json").read_text())
        assert entry["n_exposed_train"] == summary["planted"]["n_planted_train"]
        assert r["exposure_twin_match"] == entry["confirms_at_plant"] and r["twin_match"] == g["twin_match"]
        assert r["counted_top3_exposure"] == (r["top3_match"] and not r["exposure_twin_match"])
    assert exposure["rates"]["exposure_twin_at_place"] == sum(r["exposure_twin_match"] for r in exposure["records"]) / 2
    assert exposure_main(["--grid", str(tmp_path / "nothing")]) == 2


def test_rates_count_a_finding_against_each_twin_and_both():
    from case_studies.planted.grid import _exposure_fields

    base = {"a_relies": True, "a_relies_beyond_twin": True, "headline_match": True, "counted_headline": True,
            "b_third": True, "chance": 0.05, "precision_a_minus_b": 0.0, "precision_b_minus_a": 0.0,
            "precision_b_own": 0.0}
    # (found in the top 3, no-plant twin at the plant, exposure-matched twin at the plant)
    cases = [(True, False, False), (True, True, False), (True, False, True), (False, False, False)]
    records = [{**base, "top3_match": top, "twin_match": twin, "counted_top3": top and not twin,
                **_exposure_fields({"top": top}, {"confirms_at_plant": exposed, "reliance": {"a": None}})}
               for top, twin, exposed in cases]
    rt = rates(records)
    assert rt["counted_top3"] == 2 / 4 and rt["counted_top3_exposure"] == 2 / 4 and rt["counted_top3_both"] == 1 / 4
    assert rt["twin_at_place"] == 1 / 4 and rt["exposure_twin_at_place"] == 1 / 4
    assert "counted_top3_exposure" not in rates([{k: v for k, v in r.items() if "exposure" not in k} for r in records])
    assert _exposure_fields({"top": True}, None) == {}
