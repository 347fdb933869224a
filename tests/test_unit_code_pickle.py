"""Code pickled by value keeps its file name (cloudpickle >= 3.1.3 would write <dynamic-code>)."""
import pickle
import sys
import traceback

from zray.objects import code_pickle, serialization

SOURCE = '''
def outer(x):
    def inner():
        raise ValueError(x)
    return inner()
'''


def _function_defined_by_value(path):
    namespace = {"__name__": "zray_test_not_importable"}
    exec(compile(SOURCE, path, "exec"), namespace)
    assert "zray_test_not_importable" not in sys.modules   # so cloudpickle pickles it by value
    return namespace["outer"]


def test_function_pickled_by_value_keeps_its_file_name():
    function = _function_defined_by_value("/home/user/my_script.py")
    rebuilt = pickle.loads(code_pickle.dumps(function))
    assert rebuilt is not function
    assert rebuilt.__code__.co_filename == "/home/user/my_script.py"
    nested = [c for c in rebuilt.__code__.co_consts if hasattr(c, "co_filename")]
    assert nested and all(c.co_filename == "/home/user/my_script.py" for c in nested)


def test_traceback_of_rebuilt_function_names_the_file_and_line():
    function = pickle.loads(code_pickle.dumps(_function_defined_by_value("/srv/app.py")))
    try:
        function("boom")
    except ValueError as exc:
        frames = traceback.extract_tb(exc.__traceback__)
    assert [(f.filename, f.lineno, f.name) for f in frames[-2:]] == [
        ("/srv/app.py", 5, "outer"), ("/srv/app.py", 4, "inner")]


def test_serialize_uses_the_same_pickler():
    function = _function_defined_by_value("/srv/other.py")
    flags, data, buffers = serialization.parse(memoryview(serialization.serialize(function).to_bytes()))
    rebuilt = serialization.deserialize(flags, data, buffers)
    assert rebuilt.__code__.co_filename == "/srv/other.py"
