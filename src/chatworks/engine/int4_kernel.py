"""The integer-dot int4 kernel (kernels/int4_mm.cpp): build, load, pack weights, call.

Built with the machine's C++ compiler against the installed torch, once: by `make` and the
image's build stage (`python -m chatworks.engine.int4_kernel`) or, where that was not run, on
first use (~20 s), where `chatworks.built` puts such files (so the image's runtime stage,
without a compiler, gets it with the venv). Its name is a hash of the source, torch's version
and the compile command, so an edit or a torch upgrade builds a new one. Both ISA paths live
in one library (per-function `target` attributes), so it is not keyed by CPU: the path is
chosen per call (`isa()`), which is also what lets one process test both.
Where no compiler is found or the build fails, `available()` is False and the engine keeps
torch's own int4 kernel: slower, same answers up to rounding.
Does not cover: CUDA, or weights other than 4-bit groups of 32.
"""

from __future__ import annotations

import functools
import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

import torch
from torch.utils import cpp_extension

from chatworks import built

SOURCE = Path(__file__).parent / "kernels" / "int4_mm.cpp"
GROUP, TILE = 32, 16
AVX2, AVX512_VNNI = 0, 1


def _places() -> list[Path]:
    return built.places(SOURCE.parent, "kernels")


def _command(source: Path, target: Path) -> list[str]:
    abi = int(torch._C._GLIBCXX_USE_CXX11_ABI)
    includes = [f"-I{p}" for p in cpp_extension.include_paths()]
    lib = Path(torch.__file__).parent / "lib"
    return [
        os.environ.get("CXX", "g++"), "-O3", "-std=c++17", "-fopenmp", "-shared", "-fPIC",
        f"-D_GLIBCXX_USE_CXX11_ABI={abi}", *includes, str(source), "-o", str(target),
        f"-L{lib}", f"-Wl,-rpath,{lib}", "-lc10", "-ltorch_cpu",
    ]  # fmt: skip


def library_path() -> Path:
    """Where the library for this source, torch and compile command is, or is to be built."""
    key = hashlib.sha256(SOURCE.read_bytes())
    key.update(torch.__version__.encode())
    key.update(" ".join(_command(SOURCE, Path("out"))).encode())
    return built.path(f"int4_mm-{key.hexdigest()[:16]}.so", _places())


def build() -> Path:
    """Compile the library unless already built."""
    target = library_path()
    if target.exists():
        return target
    if shutil.which(os.environ.get("CXX", "g++")) is None:
        raise RuntimeError("no C++ compiler (g++, or $CXX)")
    return built.write(target, lambda out: subprocess.run(
        _command(SOURCE, out), check=True, capture_output=True, text=True))  # fmt: skip


@functools.cache
def unavailable_reason() -> str | None:
    """Why the kernel cannot run here (then torch's int4 kernel does), or None once loaded."""
    if isa() is None:
        return "torch's CPU kernels here are neither AVX2 nor AVX-512 ones"
    try:
        torch.ops.load_library(str(build()))
    except (OSError, RuntimeError, subprocess.CalledProcessError) as error:
        detail = getattr(error, "stderr", "") or str(error)
        return f"the kernel did not build or load: {detail.strip()[-500:]}"
    # Its output's shape, for torch.compile's tracing (compiled blocks call it too).
    torch.library.register_fake("chatworks::int4_mm")(
        lambda x, packed, isa: x.new_empty(x.shape[0], packed.shape[0] * TILE)
    )
    return None


def available() -> bool:
    return unavailable_reason() is None


@functools.cache
def isa() -> int | None:
    """The path torch's own kernels take here: AVX-512 VNNI, AVX2 (also under
    ATEN_CPU_CAPABILITY=avx2 on an AVX-512 CPU), or None (neither)."""
    capability = torch.backends.cpu.get_cpu_capability()
    if capability.startswith("AVX512") and torch.cpu._is_vnni_supported():
        return AVX512_VNNI
    return AVX2 if capability.startswith(("AVX2", "AVX512")) else None


def pack(codes: torch.Tensor, scale: torch.Tensor, minimum: torch.Tensor) -> torch.Tensor:
    """4-bit codes [out, in] (0..15), scale and minimum [out, in / 32] (w = code * scale +
    minimum) -> the kernel's layout, uint8 [out / 16, in / 32, 320] (kernels/int4_mm.cpp)."""
    n, k = codes.shape
    tiles, blocks = n // TILE, k // GROUP
    # [tile, row, block, chunk, half, j] -> [tile, block, chunk, row, j]: low nibble half 0.
    c = codes.to(torch.uint8).view(tiles, TILE, blocks, 4, 2, 4).permute(0, 2, 3, 4, 1, 5)
    nibbles = (c[:, :, :, 0] | (c[:, :, :, 1] << 4)).reshape(tiles, blocks, 4 * TILE * 4)

    def halves(a: torch.Tensor) -> torch.Tensor:  # [out, blocks] -> [tiles, blocks, 32] bytes
        a = a.to(torch.float16).view(tiles, TILE, blocks).transpose(1, 2).contiguous()
        return a.view(torch.uint8).view(tiles, blocks, 2 * TILE)

    return torch.cat([nibbles, halves(scale), halves(minimum)], dim=-1).contiguous()


def int4_mm(x: torch.Tensor, packed: torch.Tensor, path: int | None = None) -> torch.Tensor:
    """float32 rows x [rows, in] times the packed weight -> [rows, out], on `path` (default:
    `isa()`). Activations are rounded to int8 per block of 32 (one scale each)."""
    return torch.ops.chatworks.int4_mm(x, packed, isa() if path is None else path)


if __name__ == "__main__":  # the install step: build now, so serving never waits on g++
    reason = unavailable_reason()
    print(reason or f"built {library_path()}", file=sys.stderr if reason else sys.stdout)
    sys.exit(1 if reason else 0)
