"""Builds the native parts: the shared cache's read and write paths and the consumer's COPY
row formatter; everything else is declared in pyproject.toml."""

from setuptools import Extension, setup

NATIVE = ("service/cache/_reader", "service/cache/_writer", "service/store/_copy_rows")

setup(
    ext_modules=[
        Extension(
            path.replace("/", "."),
            sources=[f"{path}.c"],
            depends=["service/cache/_record.h"] if path.startswith("service/cache/") else [],
            extra_compile_args=["-O2", "-Wall", "-Wextra", "-std=c11"],
        )
        for path in NATIVE
    ]
)
