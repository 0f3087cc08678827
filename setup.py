"""Builds the shared cache's native read and write paths; everything else is declared in
pyproject.toml."""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            f"service.cache.{name}",
            sources=[f"service/cache/{name}.c"],
            depends=["service/cache/_record.h"],
            extra_compile_args=["-O2", "-Wall", "-Wextra", "-std=c11"],
        )
        for name in ("_reader", "_writer")
    ]
)
