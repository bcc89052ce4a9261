"""The adder's data generator against Python's own integer arithmetic."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kerasrnn.errors import UserError
from kerasrnn.tasks import get_task
from kerasrnn.tasks.adder import (
    add_bit_rows,
    adder_examples,
    all_operand_pairs,
    bits_to_int,
    carry_chain_operands,
    int_to_bits,
    parse_binary,
    random_adder_examples,
)
from kerasrnn.tasks.base import seeded_rng


@st.composite
def operands(draw):
    length = draw(st.integers(min_value=1, max_value=300))
    a = draw(st.integers(min_value=0, max_value=2**length - 1))
    b = draw(st.integers(min_value=0, max_value=2**length - 1))
    return length, a, b


@settings(max_examples=300, deadline=None)
@given(operands())
def test_sum_bits_match_python_integers(case):
    length, a, b = case
    x, y = adder_examples(int_to_bits(a, length)[None], int_to_bits(b, length)[None])
    assert x.shape == (1, length + 1, 2) and y.shape == (1, length + 1, 1)
    assert bits_to_int(x[0, :, 0]) == a and bits_to_int(x[0, :, 1]) == b
    assert x[0, -1].tolist() == [0.0, 0.0]  # the padding step that lets the last carry out
    assert bits_to_int(y[0, :, 0]) == a + b


@pytest.mark.parametrize("length", [1, 2, 7, 62, 63, 64, 65, 300, 2000])
def test_longest_carry_chains(length):
    a_bits, b_bits = carry_chain_operands(length)
    total = add_bit_rows(a_bits, b_bits)
    ones = 2**length - 1
    assert bits_to_int(total[0]) == ones + 1 == 2**length
    assert total[0].tolist() == [0] * length + [1]
    assert bits_to_int(total[1]) == ones + ones


def test_random_batches_agree_with_integers_and_are_seeded():
    x, y = random_adder_examples(seeded_rng(5, 0), 256, 100)
    for row in range(256):
        a, b = bits_to_int(x[row, :, 0]), bits_to_int(x[row, :, 1])
        assert bits_to_int(y[row, :, 0]) == a + b
    again, _ = random_adder_examples(seeded_rng(5, 0), 256, 100)
    other, _ = random_adder_examples(seeded_rng(6, 0), 256, 100)
    assert np.array_equal(x, again) and not np.array_equal(x, other)


def test_all_pairs_are_every_pair():
    a_bits, b_bits = all_operand_pairs(3)
    pairs = {(bits_to_int(a), bits_to_int(b)) for a, b in zip(a_bits, b_bits)}
    assert pairs == {(a, b) for a in range(8) for b in range(8)}


def test_training_stream_is_fresh_and_reproducible():
    adder = get_task("adder")
    config = adder.make_config({"train_length": 6, "batch_size": 16, "seed": 3})
    first = [x.numpy() for x, _ in adder.training_dataset(config).take(3)]
    second = [x.numpy() for x, _ in adder.training_dataset(config).take(3)]
    assert first[0].shape == (16, 7, 2)
    assert all(np.array_equal(p, q) for p, q in zip(first, second))
    assert not np.array_equal(first[0], first[1])  # each batch is new data


@pytest.mark.parametrize("text,value", [("0", 0), ("1", 1), ("1011", 11), ("0001", 1), ("1" * 100, 2**100 - 1)])
def test_parse_binary(text, value):
    assert parse_binary(text) == value


@pytest.mark.parametrize("text", ["", "12", "10a1", "-101", " 101", "0b101"])
def test_parse_binary_refuses_non_binary(text):
    with pytest.raises(UserError, match="binary"):
        parse_binary(text)
