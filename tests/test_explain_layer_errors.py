"""A mistake deep in a layer stack names the layer it is in: the arithmetic's own message (a kernel larger
than the map, a zero stride) says what is wrong but not where, and a stack has many layers."""

from __future__ import annotations

import pytest

from cnnlab.arith.explain import explain_params, explain_rf, explain_shape
from cnnlab.cli.main import main


@pytest.mark.parametrize(
    ("spec", "where", "rule"),
    [
        # 8 -> 4 -> 1: the third layer's 3-wide window no longer fits
        (
            "conv f=1 s=2; pool f=2 s=3; pool f=3 s=2 ceil=1; fc 10",
            r"layer 3 \(maxpool2: 'pool f=3 s=2 ceil=1'\)",
            r"pool output would be 0 along H: input 1, kernel 3",
        ),
        ("conv f=3; conv f=3 s=0", r"layer 2 \(conv2: 'conv f=3 s=0'\)", r"stride must be positive"),
        ("conv f=3; convT f=3 s=2 op=2", r"layer 2 \(convt1: 'convT f=3 s=2 op=2'\)", r"output_padding must be"),
        (
            "conv f=3 c=8; conv f=3 c=8 g=3",
            r"layer 2 \(conv2: 'conv f=3 c=8 g=3'\)",
            r"in_channels must be divisible by groups",
        ),
    ],
)
def test_a_layer_error_names_the_layer(spec: str, where: str, rule: str) -> None:
    for explain in (explain_shape, explain_params, explain_rf):
        with pytest.raises(ValueError, match=rf"^{where}: {rule}"):
            explain(spec, "8,8,3")


def test_a_message_that_names_the_layer_already_is_not_prefixed_twice() -> None:
    with pytest.raises(ValueError) as info:
        explain_shape("fc 10; conv f=3", "8,8,3")
    assert str(info.value).count("'conv f=3'") == 1


def test_the_cli_prints_the_layer_in_its_one_paragraph(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["explain", "shape", "conv f=1 s=2; pool f=2 s=3; pool f=3 s=2", "--input", "8,8,3"])
    out, err = capsys.readouterr()
    assert code == 2 and out == "" and "Traceback" not in err
    assert err.startswith("error: layer 3 (maxpool2: 'pool f=3 s=2'): pool output would be 0 along H")


@pytest.mark.parametrize("value", ["abc", "-5", "1.5e3"])
def test_a_bad_claimed_total_gives_the_fix(value: str, capsys: pytest.CaptureFixture[str]) -> None:
    # the message used to stop at "received 'abc'." with no example of what to write
    code = main(["explain", "params", "conv f=3", "--input", "8,8,3", "--claimed-total", value])
    _, err = capsys.readouterr()
    assert code == 2 and "Traceback" not in err
    assert f"received --claimed-total {value!r}. Write e.g. --claimed-total 52794" in " ".join(err.split())
