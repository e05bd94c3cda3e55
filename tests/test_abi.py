"""ABI test: the ctypes declarations in gouache._sdcpp.native against the installed stable-diffusion.h.

A C probe is compiled with the system compiler against the header and prints the
``sizeof`` of every struct, the ``offsetof``/size of every field and the value of every
enum member; each is compared with the ctypes declaration.  The header is also parsed
to check that every struct field, enum member and ``SD_API`` function is declared.
"""

from __future__ import annotations

import ctypes
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from gouache._sdcpp import library
from gouache._sdcpp import native as _native


@pytest.fixture(scope="module")
def header() -> Path:
    for cand in library.header_candidates():
        if cand.is_file():
            return cand
    pytest.fail("stable-diffusion.h not found; looked in:\n" + "\n".join(map(str, library.header_candidates())))


def _strip_comments(text: str) -> str:
    text = re.sub(r"/\*.*?\*/", "", text, flags=re.S)
    text = re.sub(r"//[^\n]*", "", text)
    return "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("#"))


def _header_structs(text: str) -> dict[str, list[str]]:
    out = {}
    for body, name in re.findall(r"typedef struct\s*\{(.*?)\}\s*(\w+)\s*;", text, flags=re.S):
        fields = []
        for decl in body.split(";"):
            decl = decl.strip()
            if decl:
                fields.append(re.findall(r"(\w+)\s*$", decl)[0])
        out[name] = fields
    return out


def _header_enums(text: str) -> dict[str, list[str]]:
    out = {}
    for name, body in re.findall(r"enum\s+(\w+)\s*\{(.*?)\}\s*;", text, flags=re.S):
        out[name] = [m.split("=")[0].strip() for m in body.split(",") if m.strip()]
    return out


def _header_functions(text: str) -> list[str]:
    return re.findall(r"SD_API[^;(]*?\b(\w+)\s*\(", text)


@pytest.fixture(scope="module")
def probe(header: Path, tmp_path_factory) -> dict[str, int]:
    cc = shutil.which("cc") or shutil.which("gcc") or shutil.which("clang")
    if cc is None:
        pytest.fail("no C compiler (cc/gcc/clang) on PATH: the ABI test needs one")
    lines = ["#include <stdio.h>", "#include <stddef.h>", '#include "stable-diffusion.h"', "int main(void) {"]
    for cname, struct in _native.STRUCTS.items():
        lines.append(f'printf("sizeof {cname} %zu\\n", sizeof({cname}));')
        for field, _ in struct._fields_:
            lines.append(f'printf("offsetof {cname}.{field} %zu\\n", offsetof({cname}, {field}));')
            lines.append(f'printf("fieldsize {cname}.{field} %zu\\n", sizeof((({cname}*)0)->{field}));')
    for enum_cls in _native.ENUMS:
        ctype, _, _, count = enum_cls.c_spelling()
        lines.append(f'printf("sizeof {ctype} %zu\\n", sizeof({ctype}));')
        for member in enum_cls:
            c = enum_cls.c_name(member)
            lines.append(f'printf("enum {c} %d\\n", (int){c});')
        if count:
            lines.append(f'printf("enum {count} %d\\n", (int){count});')
    lines += ["return 0;", "}"]
    work = tmp_path_factory.mktemp("abi")
    src = work / "probe.c"
    src.write_text("\n".join(lines))
    exe = work / "probe"
    res = subprocess.run(
        [cc, "-std=c11", "-I", str(header.parent), str(src), "-o", str(exe)], capture_output=True, text=True
    )
    assert res.returncode == 0, f"probe did not compile (a declared name is not in the header?):\n{res.stderr}"
    out = subprocess.run([str(exe)], capture_output=True, text=True, check=True).stdout
    return {k: int(v) for k, v in (line.rsplit(" ", 1) for line in out.splitlines())}


@pytest.mark.parametrize("cname", sorted(_native.STRUCTS))
def test_struct_layout(probe, cname):
    struct = _native.STRUCTS[cname]
    mismatches = []
    if probe[f"sizeof {cname}"] != ctypes.sizeof(struct):
        mismatches.append(f"sizeof: C {probe[f'sizeof {cname}']} vs ctypes {ctypes.sizeof(struct)}")
    for field, _ in struct._fields_:
        desc = getattr(struct, field)
        if probe[f"offsetof {cname}.{field}"] != desc.offset:
            mismatches.append(f"{field} offset: C {probe[f'offsetof {cname}.{field}']} vs ctypes {desc.offset}")
        if probe[f"fieldsize {cname}.{field}"] != desc.size:
            mismatches.append(f"{field} size: C {probe[f'fieldsize {cname}.{field}']} vs ctypes {desc.size}")
    assert not mismatches, f"{cname}: " + "; ".join(mismatches)


@pytest.mark.parametrize("enum_cls", _native.ENUMS, ids=lambda e: e.__name__)
def test_enum_values(probe, enum_cls):
    ctype, _, _, count = enum_cls.c_spelling()
    assert probe[f"sizeof {ctype}"] == ctypes.sizeof(_native.c_enum)
    for member in enum_cls:
        assert probe[f"enum {enum_cls.c_name(member)}"] == member.value, member
    if count:
        assert probe[f"enum {count}"] == max(enum_cls) + 1  # the sentinel follows the last member


def test_header_fully_declared(header):
    text = _strip_comments(header.read_text())
    structs = _header_structs(text)
    assert set(structs) == set(_native.STRUCTS), "struct set differs from the header"
    for name, fields in structs.items():
        assert [f for f, _ in _native.STRUCTS[name]._fields_] == fields, f"{name} fields differ from the header"
    enums = _header_enums(text)
    assert len(enums) == len(_native.ENUMS) == 10
    by_ctype = {e.c_spelling()[0].split()[-1]: e for e in _native.ENUMS}
    assert set(enums) == set(by_ctype)
    for cname, members in enums.items():
        cls = by_ctype[cname]
        declared = {cls.c_name(m) for m in cls} | ({cls.c_spelling()[3]} - {""})
        assert set(members) == declared, f"{cname}: header {sorted(set(members) ^ declared)} differ"
    funcs = _header_functions(text)
    assert len(funcs) >= 45
    assert set(funcs) == set(_native.FUNCTIONS), f"functions differ: {sorted(set(funcs) ^ set(_native.FUNCTIONS))}"


def test_library_exports_every_function():
    lib = library.lib()
    for name in _native.FUNCTIONS:
        assert hasattr(lib, name), name
