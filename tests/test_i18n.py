"""The report in two languages: grader.kit.i18n's choice of language and its phrase table."""
from __future__ import annotations

import json
import re
from collections import Counter
from pathlib import Path

import pytest

from grader.kit import i18n
from grader.kit.i18n import default_lang, display_width, translate
from grader.report import table


@pytest.mark.parametrize("env, handout, lang", [("zh", False, "zh"), ("en", True, "en"), (" ZH ", False, "zh"),
                                                ("", True, "zh"), ("", False, "en"), ("fr", True, "zh")])
def test_default_lang_follows_aics_lang_then_the_handout(monkeypatch, env, handout, lang):
    monkeypatch.setenv("AICS_LANG", env)
    monkeypatch.setattr(i18n, "is_student_handout", lambda: handout)
    assert default_lang() == lang


def test_i18n_imports_only_the_kit():
    imports = re.findall(r"^(?:from|import) (grader\S*)", Path(i18n.__file__).read_text(), re.MULTILINE)
    assert imports and all(name.startswith("grader.kit") for name in imports)


def test_english_and_unknown_languages_are_unchanged():
    text = "conv: 3 of 9 elements differ; worst element at index (0,): got 1, want 2 (abs err 1, rel err 0.5)"
    assert translate(text, "en") == text and translate(text, "fr") == text


@pytest.mark.parametrize("english, chinese", [
    ("3 of 9 elements differ", "9 个元素中有 3 个不符"),
    ("worst element at index (0, 1): got 2, want 1 (abs err 1, rel err 1)",
     "偏差最大的元素位于下标 (0, 1)：得到 2，标准答案 1（绝对误差 1，相对误差 1）"),
    ("value differs: got 0.6931, expected 0.3466 (abs err 0.347, rel err 1)",
     "数值不符：得到 0.6931，标准答案 0.3466（绝对误差 0.347，相对误差 1）"),
    ("output shape (1, 4) but expected (4,)", "输出形状为 (1, 4)，标准答案的形状为 (4,)"),
    ("NotImplementedError: TODO in exp_3_1_vgg/layers_2.py: complete ConvolutionalLayer.forward",
     "NotImplementedError: exp_3_1_vgg/layers_2.py 中的 TODO 尚未完成：ConvolutionalLayer.forward"),
    ("looks like a constant factor: got/want = 2.000 for the value; check the 1/(2NCHW) factor of formula 3.10",
     "疑似差一个常数因子：got/want = 2.000; 请检查公式 3.10 中的 1/(2NCHW) 系数"),
    ("skipped: tier 60 failed", "跳过：60 分档未通过"),
    ("same cause as conv_k3_p1_s1 (TypeError)", "与 conv_k3_p1_s1 原因相同 (TypeError)"),
    ("hidden check hidden_pool (pool_forward): wrong output shape", "隐藏检查 hidden_pool (pool_forward): 输出形状错误"),
    ("hidden checks: on, seed 7", "隐藏检查：开启，种子 7"),
])
def test_fixed_phrases_are_translated(english, chinese):
    assert translate(english, "zh") == chinese


def test_a_crash_frame_keeps_the_students_source_as_it_is():
    text = ("TypeError: 'float' object cannot be interpreted as an integer\n"
            "  at layers_2.py:57 in forward_raw: got = expected  # 3 of 9 elements differ\n"
            "  while running conv1_1.forward")
    lines = translate(text, "zh").split("\n")
    assert lines[0] == "TypeError: 'float' object cannot be interpreted as an integer"
    assert lines[1] == "  位置 layers_2.py 第 57 行，函数 forward_raw：got = expected  # 3 of 9 elements differ"
    assert lines[2] == "  运行 conv1_1.forward 时出错"


def test_wide_characters_count_two_columns():
    assert display_width("通过") == 4 and display_width("PASS") == 4


NUMBER = re.compile(r"\d+(?:\.\d+)?(?:e[+-]?\d+)?")


def report_doc() -> dict:
    """A report of real messages (as the grader writes them) of several kinds."""
    exp = {"id": "exp_3_3_style_transfer", "score": 0, "max_score": 100, "seconds": 3.0, "notes": [], "error": "",
           "checks": [
               {"name": "conv_k3_p1_s1_raw", "tier": 60, "passed": False, "seconds": 0.02, "hidden": False,
                "message": "ConvolutionalLayer(3, 3, 4, 1, 1) on input [1, 3, 6, 7] (forward_raw/backward_raw): "
                           "TypeError: 'float' object cannot be interpreted as an integer\n  at layers_2.py:84 in "
                           "forward_raw: self.output = np.zeros([n, c, height_out, width_out])"},
               {"name": "conv_k1_p0_s1_raw", "tier": 60, "passed": False, "seconds": 0.0, "hidden": False,
                "message": "ConvolutionalLayer(1, 4, 3, 0, 1) on input [2, 4, 4, 3] (forward_raw/backward_raw): "
                           "TypeError: 'float' object cannot be interpreted as an integer\n  at layers_2.py:84 in "
                           "forward_raw: self.output = np.zeros([n, c, height_out, width_out])"},
               {"name": "pool_k2_s2_raw", "tier": 60, "passed": True, "seconds": 0.0, "hidden": False,
                "message": "MaxPoolingLayer(2, 2) [output]: matches, shape (1, 3, 3, 4), max abs err 0 in 0.000 s; "
                           "backward_time 0.0002 s, forward_time 0.0001 s"},
               {"name": "content_loss", "tier": 80, "passed": False, "seconds": 0.0, "hidden": False,
                "message": "ContentLossLayer forward/backward on features [1, 8, 6, 5] (formulas 3.10, 3.11) [loss]: "
                           "value differs: got 2.688943, expected 1.344471 (abs err 1.34, rel err 1); tolerance "
                           "|got-want| <= 0.0001*max|want| + 0.0001*|want|; looks like a constant factor: got/want "
                           "= 2.000 for the value; check the 1/(2NCHW) factor of formula 3.10"},
               {"name": "style_loss", "tier": 80, "passed": False, "seconds": 0.0, "hidden": False,
                "message": "StyleLossLayer [bottom_diff]: 7 of 210 elements differ; worst element at index "
                           "(0, 1, 2, 3): got 0.25, want -0.25 (abs err 0.5, rel err 2); tolerance |got-want| <= "
                           "0.0001*max|want| + 0.0001*|want| with max|want| = 0.9; looks like a sign flip: got/want "
                           "= -1.000; formula 3.15 takes G - A (the image's Gram matrix minus the style's)"},
               {"name": "hidden_pool_k2_s2_raw", "tier": 60, "passed": False, "seconds": 0.0, "hidden": True,
                "message": "hidden check hidden_pool_k2_s2_raw (pool_raw): wrong output shape; the output width "
                           "is off by one (one less); the book's size is (H - k) // s + 1; input: shapes "
                           "[1, 3, 6, 8]; the visible check pool_k2_s2_raw shows details"},
               {"name": "network_backward", "tier": 80, "passed": False, "seconds": 0.0, "hidden": False,
                "message": "skipped: tier 60 failed"},
               {"name": "speed_test", "tier": 100, "passed": True, "seconds": 4.4, "hidden": False,
                "message": "timed by the grader: conv forward raw 4.036 s (3.900 s CPU), speedup 0.0349 s (best of "
                           "3), ratio 111.7x; pool forward raw 0.261 s, speedup 0.0080 s, ratio 32.5x"},
           ]}
    return {"total": 0, "max_total": 100, "seconds": 9.0, "submission": "/tmp/s",
            "weights": {"kind": "synthetic", "sha256": "b34dfe3eda97" + "0" * 52},
            "hidden_checks": {"enabled": True, "seed": 7}, "isolation": {"privilege_drop": True},
            "experiments": [exp]}


def test_the_chinese_table_has_the_phrases_and_every_number():
    doc = report_doc()
    english, chinese = table(doc, width=10_000), table(doc, width=10_000, lang="zh")
    for phrase in ("通过", "失败", "跳过", "标准答案", "相对误差", "与 conv_k3_p1_s1_raw 原因相同", "位置 layers_2.py 第 84 行",
                   "疑似差一个常数因子", "疑似符号取反", "隐藏检查", "60 分档还需要", "跳过：60 分档未通过", "总分 0/100",
                   "书中的输出尺寸公式为 (H - k) // s + 1", "可见检查 pool_k2_s2_raw 给出了详细信息"):
        assert phrase in chinese, phrase
    assert Counter(NUMBER.findall(chinese)) == Counter(NUMBER.findall(english))
    for word in ("elements differ", "worst element", "expected", "rel err", "PASS", "FAIL", "same cause as",
                 "tier 60 needs", "skipped:", "hidden check", "looks like"):
        assert word not in chinese, word


def test_the_chinese_table_keeps_its_columns():
    lines = table(report_doc(), lang="zh").splitlines()
    rows = [line for line in lines if re.match(r"^ +\d+  (通过|失败|跳过) ", line)]
    assert len(rows) == 8
    # tier, result and seconds end in the same terminal columns on every row, as in English
    assert {display_width(line[:line.index(".") + 3]) for line in rows} == {24}
    assert all(display_width(line) <= 100 for line in lines if not line.startswith("exp_"))


def test_json_stays_english(tmp_path):
    from grader.report import write_json
    write_json(report_doc(), tmp_path / "r.json")
    text = (tmp_path / "r.json").read_text()
    assert "elements differ" in text and not re.search(r"[\u4e00-\u9fff]", json.loads(text)["experiments"][0]
                                                       ["checks"][0]["message"])
