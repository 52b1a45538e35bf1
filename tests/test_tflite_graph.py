"""The TFLite reader on Google's two released models: op counts, weight totals, options, and the dequantised
constants against what LiteRT's own interpreter reports. Expected numbers are from
../shared/fixtures/google/README.md (read from the files with the `tflite` schema package and LiteRT)."""

import os
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from edgenas.errors import EdgenasError
from edgenas.models.tflite_graph import TFLiteError, read_tflite

GOOGLE = Path(__file__).parent / "fixtures" / "google"
AUTOSEG = GOOGLE / "autoseg_edgetpu_xs_fused_argmax.tflite"
MOBILENET = GOOGLE / "mobilenet_edgetpu_224_1.0_uint8.tflite"

EXPECTED = {
    AUTOSEG.name: dict(
        ops=Counter(CONV_2D=82, ADD=64, DEPTHWISE_CONV_2D=54, RESIZE_BILINEAR=26, AVERAGE_POOL_2D=23, SUB=3,
                    REDUCE_MAX=2, MUL=2, MINIMUM=1, RESIZE_NEAREST_NEIGHBOR=1, RESHAPE=1, DEQUANTIZE=1),
        tensors=547, convs=136, weights=2_322_168, biases=20_320, constants=2_342_542),
    MOBILENET.name: dict(
        ops=Counter(CONV_2D=46, ADD=15, DEPTHWISE_CONV_2D=13, AVERAGE_POOL_2D=1, SQUEEZE=1, RESHAPE=1,
                    SOFTMAX=1),
        tensors=198, convs=59, weights=4_052_832, biases=20_441, constants=4_073_275),
}


def _litert():
    try:
        import ai_edge_litert.interpreter as interpreter
    except ImportError:
        if os.environ.get("CI") == "true":
            pytest.fail("ai-edge-litert (the litert extra) must be installed under CI=true")
        pytest.skip("ai-edge-litert (the litert extra) is not installed")
    return interpreter


@pytest.fixture(scope="module", params=[AUTOSEG, MOBILENET], ids=["autoseg", "mobilenet"])
def graph(request):
    _litert()
    return read_tflite(request.param)


def test_op_counts_and_weight_totals(graph):
    want = EXPECTED[Path(graph.path).name]
    assert graph.op_counts() == want["ops"] and len(graph.tensors) == want["tensors"]
    convs = graph.convolutions()
    assert len(convs) == want["convs"] and all(len(c.inputs) == 3 for c in convs)
    weights = sum(graph.tensors[c.inputs[1]].raw.size for c in convs)
    biases = sum(graph.tensors[c.inputs[2]].raw.size for c in convs)
    assert (weights, biases) == (want["weights"], want["biases"])
    assert sum(t.raw.size for t in graph.tensors if t.is_constant) == want["constants"]
    assert all(graph.tensors[c.inputs[2]].dtype == "INT32" for c in convs)
    constants = [t for t in graph.tensors if t.is_constant]
    assert all(t.data.dtype == np.float32 and t.data.shape == t.raw.shape for t in constants)


def test_dequantised_constants_match_the_litert_interpreter(graph):
    interp = _litert().Interpreter(model_path=graph.path)
    interp.allocate_tensors()
    details = {d["index"]: d for d in interp.get_tensor_details()}
    checked = 0
    for conv in graph.convolutions():
        for index in conv.inputs[1:]:
            ours, theirs = graph.tensors[index], details[index]
            q = theirs["quantization_parameters"]
            raw = interp.get_tensor(index)
            assert ours.name == theirs["name"] and ours.quantized_dimension == q["quantized_dimension"]
            assert np.array_equal(ours.raw, raw) and ours.scales == tuple(float(s) for s in q["scales"])
            shape = [-1 if k == q["quantized_dimension"] else 1 for k in range(raw.ndim)]
            scale, zp = (a.reshape(shape) if a.size > 1 else a for a in (q["scales"], q["zero_points"]))
            expected = ((raw.astype(np.float64) - zp) * scale).astype(np.float32)
            np.testing.assert_allclose(ours.data, expected, rtol=1e-6, atol=0)
            checked += 1
    assert checked == 2 * len(graph.convolutions())


def test_autoseg_io_and_options():
    _litert()
    g = read_tflite(AUTOSEG)
    x, y = g.tensors[g.inputs[0]], g.tensors[g.outputs[0]]
    assert (x.shape, x.dtype, x.zero_points) == ((1, 512, 512, 3), "INT8", (-1,))
    assert x.scales[0] == pytest.approx(1 / 127.5) and (y.shape, y.dtype) == ((1, 512, 512), "FLOAT32")
    stem = g.operators[0]
    assert stem.op == "CONV_2D" and stem.options == dict(
        stride_h=2, stride_w=2, padding="SAME", activation="RELU", dilation_h=1, dilation_w=1)
    w = g.tensors[stem.inputs[1]]
    assert (w.shape, w.dtype, len(w.scales), w.quantized_dimension) == ((32, 3, 3, 3), "INT8", 32, 0)
    dw = next(o for o in g.operators if o.op == "DEPTHWISE_CONV_2D")
    assert dw.options["depth_multiplier"] == 1 and g.tensors[dw.inputs[1]].quantized_dimension == 3
    pools = [o.options for o in g.operators if o.op == "AVERAGE_POOL_2D"]
    assert all(p == dict(filter_h=3, filter_w=3, stride_h=2, stride_w=2, padding="SAME", activation="NONE")
               for p in pools)
    resizes = [o.options for o in g.operators if o.op.startswith("RESIZE")]
    assert all(not r["align_corners"] and r["half_pixel_centers"] for r in resizes)
    assert resizes[-1]["size"] == (512, 512) and resizes[-2]["size"] == (256, 256)
    assert [o.options for o in g.operators if o.op == "REDUCE_MAX"] == [dict(keep_dims=True, axes=(-1,))] * 2
    assert g.producer(g.outputs[0]).op == "DEQUANTIZE" and g.producer(0) is None
    assert [o.index for o in g.consumers(0)] == [0]


def test_mobilenet_input_and_classifier():
    _litert()
    g = read_tflite(MOBILENET)
    x = g.tensors[g.inputs[0]]
    assert (x.shape, x.dtype, x.zero_points) == ((1, 224, 224, 3), "UINT8", (128,))
    classifier = g.tensors[g.convolutions()[-1].inputs[1]]
    assert (classifier.shape, classifier.dtype, len(classifier.scales)) == ((1001, 1, 1, 1280), "UINT8", 1)


@pytest.mark.parametrize("content", [b"", b"not a flatbuffer at all", AUTOSEG.read_bytes()[:4096]],
                         ids=["empty", "text", "truncated"])
def test_a_wrong_file_gives_one_line_naming_it(tmp_path, content):
    _litert()
    path = tmp_path / "bad.tflite"
    path.write_bytes(content)
    with pytest.raises(TFLiteError) as err:
        read_tflite(path)
    assert isinstance(err.value, EdgenasError) and str(path) in str(err.value) and "\n" not in str(err.value)


def test_a_missing_file_gives_one_line_naming_it(tmp_path):
    path = tmp_path / "missing.tflite"
    with pytest.raises(TFLiteError, match="missing.tflite") as err:
        read_tflite(path)
    assert "\n" not in str(err.value)
