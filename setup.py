# The C extension lives in native/; setuptools builds it on `pip install`.
from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "zray._native",
            sources=["native/zray_native.c"],
            extra_compile_args=["-O3", "-std=c11", "-Wall"],
            extra_link_args=["-pthread"],
        ),
        Extension(                  # the mpi backend's small allreduce; links no MPI
            "zray._mpi_hot",
            sources=["native/mpi_hot.c"],
            extra_compile_args=["-O3", "-std=c11", "-Wall"],
        ),
    ]
)
