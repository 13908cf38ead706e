"""Parser, printer and HW-file tests for compiler.mdc (parser, syntax, hw)."""
from pathlib import Path

import pytest
from hypothesis import given, settings, strategies as st

from compiler.errors import MappingError
from compiler.mdc.hw import HwConfig, parse_hw, print_hw
from compiler.mdc.parser import parse_mdc, parse_mdc_file
from compiler.mdc.syntax import (Const, MdcFile, Sz, cluster, make_layer, print_mdc, resolve_layer, spatial, temporal)
from compiler.mdc.tokens import tokenize

REF = Path(__file__).resolve().parents[2] / "shared" / "maestro-reference"
needs_ref = pytest.mark.skipif(not REF.is_dir(), reason="maestro-reference not available")

EXAMPLE = """
// demo
Constant KT 4;
Network demo {
  Layer conv3x3 {
    Type: CONV
    Stride { X: 1, Y: 1 }
    Dimensions { K: 64, C: 64, R: 3, S: 3, Y: 58, X: 58 }
    Dataflow {
      TemporalMap(KT,KT) K;
      SpatialMap(1,1) Y';
      TemporalMap(Sz(S),1) X;
      TemporalMap(Sz(R),Sz(R)) R;
      Cluster(16, P);
      SpatialMap(1,1) C;
    }
  }
}
"""


def test_tokenizer_separators_and_comments():
    toks = [t.text for t in tokenize("TemporalMap(4,-4) C;// x\nA B//c D")]
    assert toks == ["TemporalMap", "4", "4", "C", "A", "B//c", "D"]


def test_parse_example_keeps_symbols():
    mdc = parse_mdc(EXAMPLE)
    layer = mdc.layers[0]
    assert mdc.constants == (("KT", 4),)
    assert layer.name == "conv3x3" and layer.type == "CONV"
    assert layer.directives[0].size == Const("KT")
    assert layer.directives[2].size == Sz("S")
    assert layer.directives[1].dim == "Y'"
    assert layer.directives[4] == cluster(16, "P")
    res = resolve_layer(layer, mdc.constant_map())
    assert res.directives[0].size == 4 and res.directives[2].size == 3


def test_punctuation_is_optional():
    a = parse_mdc(EXAMPLE)
    b = parse_mdc(EXAMPLE.replace("(", " ").replace(")", " ").replace(";", " ").replace(",", " "))
    assert a == b


@pytest.mark.parametrize("bad, needle", [
    ("Type: FC", "not supported"), ("Type: MATMUL", "unknown layer type"),
    ("temporalmap", "unexpected token"), ("Cluster(16, Q)", "P or L"),
    ("Cluster(16)", "unexpected token"), ("TemporalMap(KT,KT) K; // ", None),
])
def test_errors_have_line(bad, needle):
    src = EXAMPLE
    if bad.startswith("Type"):
        src = src.replace("Type: CONV", bad)
    elif bad == "temporalmap":
        src = src.replace("TemporalMap(KT", "temporalmap(KT")
    elif bad.startswith("Cluster"):
        src = src.replace("Cluster(16, P)", bad)
    if needle is None:
        parse_mdc(src)
        return
    with pytest.raises(MappingError) as exc:
        parse_mdc(src, "x.m")
    assert needle in str(exc.value) and str(exc.value).startswith("x.m:")


def test_glued_comment_hint():
    with pytest.raises(MappingError, match="glued"):
        parse_mdc(EXAMPLE.replace("SpatialMap(1,1) C;", "SpatialMap(1,1) C// note\n TemporalMap(1,1) K;"))


@needs_ref
def test_round_trip_reference_mappings():
    files = sorted((REF / "mappings").glob("*.m"))
    assert files
    n = 0
    for f in files:
        if "__maeri.m" in f.name:  # U+2019 primes: rejected on purpose
            with pytest.raises(MappingError, match="non-ASCII"):
                parse_mdc_file(f)
            continue
        if f.name.endswith("__ykp_os.m") and not f.name.startswith("rn50_conv1__"):
            with pytest.raises(MappingError, match="Tile size of R"):  # R != 7: MAESTRO's R/S rule
                parse_mdc_file(f)
            continue
        mdc = parse_mdc_file(f)
        again = parse_mdc(print_mdc(mdc))
        assert again == mdc, f.name
        assert print_mdc(again) == print_mdc(mdc)
        n += 1
    assert n >= 100


def test_hw_round_trip_and_errors():
    hw = parse_hw("// edge\nnum_pes: 256\nl1_size_cstr: 512\nl2_size_cstr 108000\nnoc_bw_cstr: 64\n"
                  "offchip_bw_cstr: 16\n")
    assert hw == HwConfig(256, 512, 108000, 64, 16, 1)
    assert parse_hw(print_hw(hw)) == hw
    for bad in ("num_pes = 256", "vector_width: 4", "noc_bw_cstr: 0", "num_pes"):
        with pytest.raises(MappingError):
            parse_hw(bad, "h.m")


names = st.sampled_from(["K", "C", "R", "S", "Y", "X"])
sizes = st.integers(1, 300)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["t", "s", "c"]), sizes, sizes, names), min_size=1,
                max_size=12))
def test_round_trip_generated(items):
    # TemporalMap on R/S must be (3,3) here (MAESTRO's R/S rule), so use Sz().
    dirs = [cluster(a) if k == "c" else
            temporal(Sz(d), Sz(d), d) if (k == "t" and d in "RS") else
            (temporal if k == "t" else spatial)(a, b, d)
            for k, a, b, d in items]
    layer = make_layer("l", "CONV", {"K": 4, "C": 4, "R": 3, "S": 3, "Y": 9, "X": 9}, dirs,
                       stride={"X": 1, "Y": 1})
    mdc = MdcFile((), "n", (layer,))
    assert parse_mdc(print_mdc(mdc)) == mdc
