"""A few of Ray's preprocessors: StandardScaler, OneHotEncoder, Concatenator.

fit() computes statistics with Dataset aggregations; transform() is a map_batches over pandas
batches, so it streams like any other map.
"""
import numpy as np


class Preprocessor:
    _is_fittable = True

    def __init__(self):
        self.stats_ = None

    def fit(self, ds):
        self.stats_ = self._fit(ds)
        return self

    def fit_transform(self, ds):
        return self.fit(ds).transform(ds)

    def _check_fitted(self):
        if self._is_fittable and self.stats_ is None:
            raise RuntimeError(f"{type(self).__name__} must be fit() before transform()")

    def transform(self, ds):
        self._check_fitted()
        return ds.map_batches(self._transform_pandas, batch_format="pandas")

    def transform_batch(self, batch):
        import pandas as pd
        self._check_fitted()
        df = batch if isinstance(batch, pd.DataFrame) else pd.DataFrame(dict(batch))
        return self._transform_pandas(df)

    def _fit(self, ds):
        return {}


class StandardScaler(Preprocessor):
    """(x - mean) / std per column (population std, ddof=0, as Ray's); std 0 maps to 0."""

    def __init__(self, columns, output_columns=None):
        super().__init__()
        self.columns = list(columns)
        self.output_columns = list(output_columns) if output_columns else self.columns

    def _fit(self, ds):
        from .aggregate import Mean, Std
        aggs = [Mean(c) for c in self.columns] + [Std(c, ddof=0) for c in self.columns]
        res = ds.aggregate(*aggs)
        return {f"mean({c})": res[f"mean({c})"] for c in self.columns} | \
               {f"std({c})": res[f"std({c})"] for c in self.columns}

    def _transform_pandas(self, df):
        for c, out in zip(self.columns, self.output_columns):
            mean, std = self.stats_[f"mean({c})"], self.stats_[f"std({c})"]
            if not std:
                df[out] = 0.0
            else:
                df[out] = (df[c] - mean) / std
        return df

    def __repr__(self):
        return f"StandardScaler(columns={self.columns!r}, output_columns={self.output_columns!r})"


class OneHotEncoder(Preprocessor):
    """Each column becomes a list-valued column of 0/1 over its sorted unique values (Ray 2.x's
    layout); values not seen in fit() encode as all zeros."""

    def __init__(self, columns, *, max_categories=None, output_columns=None):
        super().__init__()
        self.columns = list(columns)
        self.max_categories = dict(max_categories or {})
        self.output_columns = list(output_columns) if output_columns else self.columns

    def _fit(self, ds):
        stats = {}
        for c in self.columns:
            counts = ds.groupby(c).count().take_all()
            counts.sort(key=lambda r: (-r["count()"], str(r[c])))
            limit = self.max_categories.get(c)
            values = [r[c] for r in counts][:limit] if limit else [r[c] for r in counts]
            stats[f"unique_values({c})"] = {v: i for i, v in enumerate(sorted(values, key=str))}
        return stats

    def _transform_pandas(self, df):
        for c, out in zip(self.columns, self.output_columns):
            index = self.stats_[f"unique_values({c})"]
            codes = df[c].map(index)
            n = len(index)
            encoded = []
            for code in codes:
                row = np.zeros(n, dtype=np.int64)
                if code == code and code is not None:   # not NaN
                    row[int(code)] = 1
                encoded.append(row)
            df[out] = encoded
        return df

    def __repr__(self):
        return f"OneHotEncoder(columns={self.columns!r})"


class Concatenator(Preprocessor):
    """Concatenate columns into one tensor column (and drop them)."""
    _is_fittable = False

    def __init__(self, columns, output_column_name="concat_out", dtype=None,
                 raise_if_missing=False, flatten=False):
        super().__init__()
        self.columns = list(columns)
        self.output_column_name = output_column_name
        self.dtype = dtype
        self.raise_if_missing = raise_if_missing
        self.flatten = flatten

    def transform(self, ds):
        return ds.map_batches(self._transform_numpy, batch_format="numpy")

    def _transform_numpy(self, batch):
        missing = [c for c in self.columns if c not in batch]
        if missing and self.raise_if_missing:
            raise ValueError(f"Concatenator: missing column(s) {missing}")
        cols = [np.asarray(batch[c]) for c in self.columns if c in batch]
        parts = [c.reshape(len(c), -1) for c in cols]
        out = np.concatenate(parts, axis=1) if parts else np.zeros((0, 0))
        if self.dtype is not None:
            out = out.astype(self.dtype)
        result = {k: v for k, v in batch.items() if k not in self.columns}
        result[self.output_column_name] = out
        return result

    def _transform_pandas(self, df):
        batch = {c: df[c].to_numpy() for c in df.columns}
        import pandas as pd
        out = self._transform_numpy(batch)
        return pd.DataFrame({k: (list(v) if getattr(v, "ndim", 1) > 1 else v) for k, v in out.items()})

    def __repr__(self):
        return f"Concatenator(columns={self.columns!r}, output_column_name={self.output_column_name!r})"
