"""@serve.ingress(app): a deployment class serves an ASGI app (FastAPI, Starlette, any ASGI).

For FastAPI, the routes whose endpoints are methods of the class are bound, in the replica, to
the replica's instance: each such route is rebuilt with an endpoint whose signature lacks
`self`, so FastAPI parses the other parameters (path, query, body) as it would for a function.
"""
import functools
import inspect


def ingress(app):
    def decorate(cls):
        if not inspect.isclass(cls):
            raise ValueError("@serve.ingress must be applied to a class")
        cls.__serve_asgi_app__ = app
        return cls
    if not callable(app) and not hasattr(app, "routes"):
        raise TypeError(f"@serve.ingress expects an ASGI app (e.g. a FastAPI app), got {type(app).__name__}")
    return decorate


def bind_asgi_app(app, cls, instance):
    router = getattr(app, "router", None)
    routes = getattr(router, "routes", None)
    if routes is None:
        return app
    methods = {}
    for klass in reversed(cls.__mro__):
        for name, member in vars(klass).items():
            if inspect.isfunction(member):
                methods[id(member)] = name
    try:
        from fastapi.routing import APIRoute, APIWebSocketRoute
    except ImportError:     # a Starlette app: its endpoints are plain functions
        return app
    new_routes = []
    for route in routes:
        endpoint = getattr(route, "endpoint", None)
        if isinstance(route, (APIRoute, APIWebSocketRoute)) and id(endpoint) in methods:
            route = _rebuild(route, _bound_endpoint(endpoint, instance))
        new_routes.append(route)
    router.routes[:] = new_routes
    if hasattr(app, "openapi_schema"):
        app.openapi_schema = None
    return app


def _bound_endpoint(fn, instance):
    sig = inspect.signature(fn)
    params = list(sig.parameters.values())[1:]
    if inspect.iscoroutinefunction(fn):
        @functools.wraps(fn)
        async def endpoint(*args, **kwargs):
            return await fn(instance, *args, **kwargs)
    elif inspect.isasyncgenfunction(fn) or inspect.isgeneratorfunction(fn):
        @functools.wraps(fn)
        def endpoint(*args, **kwargs):
            return fn(instance, *args, **kwargs)
    else:
        @functools.wraps(fn)
        def endpoint(*args, **kwargs):
            return fn(instance, *args, **kwargs)
    del endpoint.__wrapped__            # FastAPI must see the new signature, not fn's
    endpoint.__signature__ = sig.replace(parameters=params)
    return endpoint


def _rebuild(route, endpoint):
    cls = type(route)
    accepted = inspect.signature(cls.__init__).parameters
    kwargs = {}
    for name in accepted:
        if name in ("self", "path", "endpoint") or not hasattr(route, name):
            continue
        kwargs[name] = getattr(route, name)
    if "dependencies" in kwargs and kwargs["dependencies"] is None:
        kwargs["dependencies"] = []
    return cls(route.path, endpoint, **kwargs)
