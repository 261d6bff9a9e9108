"""The grader's messages in the student's language: English as written, or Chinese.

Messages are written once, in English, by the comparisons (``grader.kit.compare``), the
diagnoses (``grader.diagnose``), the child's crash lines (``grader.probe``), the checks
and the report. :func:`translate` renders them in Chinese with an ordered table of
phrase patterns (:data:`PHRASES`): each rule matches one fixed phrase of those messages,
numbers and names captured, so what is not a known phrase (layer names, numbers, a
Python exception's own words, the student's source line) stays exactly as it was.
The JSON reports stay English; only the terminal table is translated.

This module imports nothing of the grader outside ``grader.kit``, so the runners and the
sandboxed child may use it too.
"""
from __future__ import annotations

import os
import re
import unicodedata

from grader.kit.paths import is_student_handout

LANGS = ("zh", "en")
LANG_VARIABLE = "AICS_LANG"


def default_lang() -> str:
    """``$AICS_LANG`` when it is ``zh`` or ``en``; else ``zh`` in a student handout, ``en`` elsewhere."""
    chosen = os.environ.get(LANG_VARIABLE, "").strip().lower()
    if chosen in LANGS:
        return chosen
    return "zh" if is_student_handout() else "en"


# (English pattern, Chinese replacement), applied in this order; the specific phrases come
# before the shorter ones they contain. A replacement may use the pattern's groups.
_RULES: list[tuple[str, str]] = [
    # ----- crash lines of the child (grader.probe) and the skeleton's TODOs
    (r"TODO in (\S+?): complete (\S+)", r"\1 中的 TODO 尚未完成：\2"),
    (r"NotImplementedError \(a TODO is not done yet\)", r"NotImplementedError（有 TODO 尚未完成）"),
    (r"^(\s*)at (\S+):(\d+) in (\S+?): ", r"\1位置 \2 第 \3 行，函数 \4："),
    (r"^(\s*)at (\S+):(\d+) in (\S+)$", r"\1位置 \2 第 \3 行，函数 \4"),
    (r"^(\s*)while running (.+)$", r"\1运行 \2 时出错"),
    (r"\(and (\d+) more notes\)", r"（另有 \1 条注释）"),
    (r"the submission ran out of memory", r"提交的代码内存不足"),
    (r"\(limit ([\d.]+) GiB\)", r"（上限 \1 GiB）"),
    (r"a module or method must return, never exit the program", r"模块或方法应当 return，不能退出程序"),
    (r"\(its message could not be read\)", r"（无法读取它的消息）"),
    (r"the submission's process (.+?) while running this check", r"提交代码的进程在运行本检查时\1"),
    (r"case was not run", r"本例没有运行"),
    # ----- comparisons (grader.kit.compare)
    (r"(\d+) of (\d+) elements differ", r"\2 个元素中有 \1 个不符"),
    (r"worst element at index (\([^)]*\)): got (\S+), want (\S+) \(abs err (\S+), rel err (\S+)\)",
     r"偏差最大的元素位于下标 \1：得到 \2，标准答案 \3（绝对误差 \4，相对误差 \5）"),
    (r"value differs: got (\S+), expected (\S+) \(abs err (\S+), rel err (\S+)\)",
     r"数值不符：得到 \1，标准答案 \2（绝对误差 \3，相对误差 \4）"),
    (r"tolerance (\|got-want\| <= \S+ \+ \S+) with max\|want\| = (\S+)", r"容差 \1，其中 max|want| = \2"),
    (r"tolerance (\|got-want\| <= \S+ \+ \S+)", r"容差 \1"),
    (r"output shape (\([^)]*\)) but expected (\([^)]*\))", r"输出形状为 \1，标准答案的形状为 \2"),
    (r"\(same number of elements: a reshape/transpose in the wrong order\?\)",
     r"（元素个数相同：reshape/transpose 的顺序错了？）"),
    (r"output has non-finite values \(first at index (\([^)]*\)): ([^)]*)\)", r"输出含有非有限值（第一个位于下标 \1：\2）"),
    (r"got None \(did the method forget to return its result\?\)", r"得到 None（方法是否忘了 return 结果？）"),
    (r"output of type (\S+) is not a numeric array", r"类型为 \1 的输出不是数值数组"),
    (r"matches, shape (\([^)]*\)), max abs err (\S+)", r"一致，形状 \1，最大绝对误差 \2"),
    (r"empty output matches", r"空输出，一致"),
    (r"first layer that differs: (\S+) \(no layer of that name\)", r"第一个不一致的层：\1（没有这个名字的层）"),
    (r"first layer that differs: (\S+) \(output shape (\([^)]*\)), expected (\([^)]*\))\)",
     r"第一个不一致的层：\1（输出形状 \2，应为 \3）"),
    (r"first layer that differs: (\S+)", r"第一个不一致的层：\1"),
    # ----- diagnoses (grader.diagnose)
    (r"looks like a sign flip: got/want = -1\.000", r"疑似符号取反：got/want = -1.000"),
    (r"formula (3\.\d+) takes X - Y \(the image's features minus the content's\)",
     r"公式 \1 用的是 X - Y（生成图像的特征减去内容图像的特征）"),
    (r"formula (3\.\d+) takes G - A \(the image's Gram matrix minus the style's\)",
     r"公式 \1 用的是 G - A（生成图像的 Gram 矩阵减去风格图像的）"),
    (r"looks like a constant factor: got/want = ", r"疑似差一个常数因子：got/want = "),
    (r" for every element", r"，每个元素都如此"),
    (r" for the value", r""),
    (r"check the (.+?) factor of formula (3\.\d+)", r"请检查公式 \2 中的 \1 系数"),
    (r"each row of a softmax must sum to 1", r"softmax 的每一行之和应为 1"),
    (r"looks like the kernel is transposed \(kh and kw swapped: (.+?) used for (.+?)\)",
     r"疑似卷积核转置（kh 与 kw 互换：把 \1 当作 \2 使用）"),
    (r"looks like the kernel is flipped \(rotated 180 degrees\): the book's convolution is a "
     r"cross-correlation, the kernel is used as it is \(formula 3\.1\)",
     r"疑似卷积核被翻转（旋转 180 度）：书中的卷积是互相关，卷积核按原样使用（公式 3.1）"),
    (r"looks like the bias is not added", r"疑似没有加偏置"),
    (r"looks like both the stride and the padding are ignored", r"疑似同时忽略了步长和填充"),
    (r"looks like the stride is ignored \(the windows move by 1, not by stride = (\d+)\)",
     r"疑似忽略了步长（窗口每次移动 1，而不是 stride = \1）"),
    (r"looks like the padding is ignored \(the input needs (\d+) zero rows and columns on each side\)",
     r"疑似忽略了填充（输入的每一侧需要补 \1 行和列的 0）"),
    (r"looks like average pooling: max pooling takes the largest value of each window \(formula 3\.7\)",
     r"疑似做成了平均池化：最大池化取每个窗口中的最大值（公式 3.7）"),
    (r"looks like the softmax runs over axis 0 \(the batch\); each row \(axis 1\) is one sample's scores",
     r"疑似 softmax 沿 axis 0（批维度）计算；每一行（axis 1）才是一个样本的得分"),
    (r"the output is all zeros: is the result written into the array that is returned\?",
     r"输出全为 0：结果是否写进了返回的数组？"),
    (r"the output height and width is off by one \(one (more|less)\)", r"输出的高和宽差一（\1）"),
    (r"the output (height|width) is off by one \(one (more|less)\)", r"输出的 \1 差一（\2）"),
    (r"（more）", r"（多了一）"),
    (r"（less）", r"（少了一）"),
    (r"(差一（\S+?）); the book's size is (\([^)]*\) // s \+ 1)", r"\1；书中的输出尺寸公式为 \2"),
    # ----- hidden checks (grader.experiments)
    (r"the visible check (\S+) passes; this case differs in kind: ", r"可见检查 \1 已通过；本例不同之处："),
    (r"the same shapes and parameters with fresh random values \(does the code depend on particular values, "
     r"or keep results between calls\?\)",
     r"形状和参数相同，数值是新的随机数（代码是否依赖特定数值，或在两次调用之间保留了结果？）"),
    (r"the visible check (\S+) shows details", r"可见检查 \1 给出了详细信息"),
    (r"the visible checks of the same layer show details", r"同一层的可见检查给出了详细信息"),
    (r"the visible checks on the cat image show details", r"猫图上的可见检查给出了详细信息"),
    (r"wrong values \(shape right\)", r"数值错误（形状正确）"),
    (r"wrong output shape", r"输出形状错误"),
    (r"wrong value\b", r"数值错误"),
    (r"output has NaN or inf values", r"输出含有 NaN 或 inf"),
    (r"no output \(None returned\)", r"没有输出（返回了 None）"),
    (r"input: shapes ", r"输入：形状 "),
    (r"input: fresh random values", r"输入：新的随机数"),
    (r"^hidden checks: on, seed (\S+)$", r"隐藏检查：开启，种子 \1"),
    (r"^hidden checks: off$", r"隐藏检查：关闭"),
    (r"\bhidden check(\(s\))?(?!s)", r"隐藏检查"),
    (r"the top-1 class id differs from the reference's", r"top-1 类别与参考答案不同"),
    # ----- network checks and the checks' pass messages
    (r"top-1 class id (\d+) but the reference gives (\d+) with these weights",
     r"top-1 类别为 \1，但参考答案在这组权重下为 \2"),
    (r"top-1 class id (\d+) \(p = (\S+)\) (on a fresh image )?matches the reference",
     r"top-1 类别 \1（p = \2）与参考答案一致"),
    (r"top-1 class id (\d+) \(p = (\S+)\)", r"top-1 类别 \1（p = \2）"),
    (r"total loss (\S+) -> (\S+) in (\d+) steps", r"总损失 \1 -> \2（\3 步）"),
    (r"the total loss did not fall", r"总损失没有下降"),
    (r"check the gradients' signs and the Adam update", r"请检查梯度的符号和 Adam 更新"),
    (r"speed-up ([\d.]+)x is below the required ([\d.]+)x", r"加速比 \1x 低于要求的 \2x"),
    (r"timed by the grader: ", r"由评分程序计时："),
    (r"\bratio ([\d.]+x)", r"加速比 \1"),
    (r"\bmax abs err (\S+)", r"最大绝对误差 \1"),
    (r"grader error in this check", r"评分程序在本检查中出错"),
    (r"not checked: ", r"未检查："),
    # ----- the report (grader.report) and the plugin's skips (grader.checks.plugin)
    (r"skipped: tier (\d+) failed", r"跳过：\1 分档未通过"),
    (r"not run \(--quick\)", r"未运行（--quick）"),
    (r"same cause as (\S+?)( \((\S+)\))?$", r"与 \1 原因相同\2"),
    (r"\((\d+) of (\d+) checks passed\)", r"（\2 项检查通过 \1 项）"),
    (r"tier (\d+) needs: ", r"\1 分档还需要："),
    (r" and (\d+) more\b", r" 等另外 \1 项"),
    (r"the grader could not finish this experiment", r"评分程序没能完成这个实验"),
    (r"^weights: ", r"权重："),
    (r"^TOTAL ", r"总分 "),
    (r"^note: ", r"注："),
    (r"^GRADER ERROR: ", r"评分程序错误："),
    (r"^isolation: reduced ", r"隔离：降级 "),
]
PHRASES: list[tuple[re.Pattern, str]] = [(re.compile(p, re.MULTILINE), r) for p, r in _RULES]

# The table's fixed words, by whole cell (same display width as the English: 4 columns).
WORDS = {"zh": {"PASS": "通过", "FAIL": "失败", "SKIP": "跳过", "tier": "分档", "result": "结果",
                "seconds": "秒", "check": "检查"}}

# A crash frame's source line is the student's own text: never translated.
_FRAME = re.compile(r"^(\s*at \S+:\d+ in \S+?: )(.*)$")


def word(text: str, lang: str) -> str:
    """One fixed word of the table (``PASS``, ``tier``, ...) in ``lang``."""
    return WORDS.get(lang, {}).get(text, text)


def translate(text: str, lang: str) -> str:
    """``text`` (the grader's English) rendered in ``lang``; English and unknown languages unchanged.

    Works line by line; a crash frame line keeps its source code as it is.
    """
    if lang != "zh" or not text:
        return text
    return "\n".join(_translate_line(line) for line in str(text).split("\n"))


def _translate_line(line: str) -> str:
    frame = _FRAME.match(line)
    head, tail = (frame.group(1), frame.group(2)) if frame else (line, "")
    for pattern, replacement in PHRASES:
        head = pattern.sub(replacement, head)
    return head + tail


def display_width(text: str) -> int:
    """Terminal columns of ``text``: wide (CJK) characters count two."""
    return sum(2 if unicodedata.east_asian_width(ch) in "WF" else 1 for ch in text)
