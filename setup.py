"""Builds the shared cache's native read path; everything else is declared in pyproject.toml."""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "service.cache._reader",
            sources=["service/cache/_reader.c"],
            extra_compile_args=["-O2", "-Wall", "-Wextra", "-std=c11"],
        )
    ]
)
