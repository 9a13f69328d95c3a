"""The worked example of docs/spec.md's transposed correlation runs as printed (doctest)."""

from __future__ import annotations

import doctest
import re
from pathlib import Path

SPEC = Path(__file__).resolve().parent.parent / "docs" / "spec.md"


def test_spec_transpose_example_runs_as_printed() -> None:
    text = SPEC.read_text()
    section = text[text.index("## 9. The transposed correlation") : text.index("## 10. Layouts")]
    blocks = re.findall(r"```python\n(.*?)```", section, flags=re.DOTALL)
    examples = "\n".join(block for block in blocks if ">>>" in block)
    assert examples, "docs/spec.md section 9 has no doctest example"
    parser = doctest.DocTestParser()
    test = parser.get_doctest(examples, {}, "docs/spec.md", str(SPEC), 0)
    runner = doctest.DocTestRunner(optionflags=doctest.NORMALIZE_WHITESPACE)
    runner.run(test)
    assert runner.tries >= 5 and runner.failures == 0
