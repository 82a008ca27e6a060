"""Which work functions use the GPU: Python through dcp.gpu, JavaScript through `gpu`."""

from __future__ import annotations

import textwrap

import pytest

from dcp.protocol.gpu_use import uses_gpu


def python(source: str) -> bool:
    return uses_gpu("python", textwrap.dedent(source))


@pytest.mark.parametrize(
    "source",
    [
        "from dcp import gpu\ndef work(x):\n    return gpu.run(x)\n",
        "from dcp import gpu as g\ndef work(x):\n    return g.run(x)\n",
        "import dcp.gpu\ndef work(x):\n    return dcp.gpu.run(x)\n",
        "from dcp.gpu import kernel\n",
        "from dcp.runtime import gpu\n",
        "import dcp\ndef work(x):\n    return dcp.gpu.run(x)\n",
        "import dcp as d\ndef work(x):\n    return d.gpu.run(x)\n",
        "import dcp\nkernel = dcp.runtime.gpu.kernel\n",
    ],
)
def test_a_python_work_function_that_imports_dcp_gpu_uses_the_gpu(source):
    assert uses_gpu("python", source)


def test_an_import_inside_the_work_function_counts_too():
    assert python(
        """
        def work(x):
            from dcp import gpu

            @gpu.kernel
            def double(a, out):
                out[0] = a[0] * 2

            return gpu.run(double, [x])
        """
    )


@pytest.mark.parametrize(
    "source",
    [
        "def work(x):\n    return x * 2\n",
        "import dcp\ndef work(x):\n    return dcp.__version__\n",
        "import numpy as gpu\ndef work(x):\n    return gpu.sum(x)\n",
        "from . import gpu\n",
        "from dcp import errors\n",
        "def work(x):\n    return 'from dcp import gpu'\n",
        "# import dcp.gpu\ndef work(x):\n    return x\n",
        "def work(x):\n    return x.gpu\n",
        "import other\ndef work(x):\n    return other.gpu.run(x)\n",
    ],
)
def test_python_that_does_not_import_dcp_gpu_does_not_use_the_gpu(source):
    assert not uses_gpu("python", source)


def test_python_that_does_not_parse_is_left_to_the_source_checks():
    assert not uses_gpu("python", "from dcp import gpu\ndef work(x) return x\n")
    assert not uses_gpu("python", "from dcp import gpu\0")


@pytest.mark.parametrize(
    "source",
    [
        "async (x) => { const device = await gpu.device(); return x; }",
        "async (x) => gpu.run(x)",
        "(x) => gpu['run'](x)",
        "(x) => gpu?.run(x)",
        "async (x) => { const adapter = await navigator.gpu.requestAdapter(); return 1; }",
        "(x) => navigator?.gpu",
        "(x) => globalThis.gpu.run(x)",
        "(x) => 'a string' + gpu.run(x) // and a comment",
    ],
)
def test_a_javascript_work_function_using_gpu_or_navigator_gpu_uses_the_gpu(source):
    assert uses_gpu("js", source)


@pytest.mark.parametrize(
    "source",
    [
        "(x) => x * 2",
        "(x) => x.gpu.run()",
        "(x) => options.gpu",
        "(x) => 'gpu.run(x)'",
        '(x) => "navigator.gpu"',
        "(x) => `gpu.device()`",
        "// gpu.run(x)\n(x) => x",
        "/* navigator.gpu\n gpu.device() */ (x) => x",
        "(x) => { const gpu = {run: (v) => v}; return gpu.run(x); }",
        "(x) => mygpu.run(x) + gpus.length + $gpu.x",
        "(x) => { let gpuCount = 1; return gpuCount; }",
    ],
)
def test_javascript_that_only_mentions_gpu_does_not_use_the_gpu(source):
    assert not uses_gpu("js", source)


def test_a_javascript_gpu_of_its_own_does_not_hide_navigator_gpu():
    source = "async (x) => { const gpu = navigator.gpu; return gpu.requestAdapter(); }"
    assert uses_gpu("js", source)


def test_an_unknown_language_does_not_use_the_gpu():
    assert not uses_gpu("ruby", "gpu.run(x)")
