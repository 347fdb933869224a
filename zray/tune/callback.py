"""`tune.Callback`: hooks the runner calls on the driver (Ray's names and arguments)."""


class Callback:
    def setup(self, stop=None, num_samples=None, total_num_samples=None, **info):
        pass

    def on_step_begin(self, iteration, trials, **info):
        pass

    def on_step_end(self, iteration, trials, **info):
        pass

    def on_trial_start(self, iteration, trials, trial, **info):
        pass

    def on_trial_restore(self, iteration, trials, trial, **info):
        pass

    def on_trial_save(self, iteration, trials, trial, **info):
        pass

    def on_trial_result(self, iteration, trials, trial, result, **info):
        pass

    def on_trial_complete(self, iteration, trials, trial, **info):
        pass

    def on_trial_recover(self, iteration, trials, trial, **info):
        pass

    def on_trial_error(self, iteration, trials, trial, **info):
        pass

    def on_checkpoint(self, iteration, trials, trial, checkpoint, **info):
        pass

    def on_experiment_end(self, trials, **info):
        pass

    def get_state(self):
        return None

    def set_state(self, state):
        pass


class CallbackList:
    """Calls a hook on every callback; a callback's exception is the experiment's error."""

    def __init__(self, callbacks):
        self.callbacks = list(callbacks or [])

    def call(self, hook, **kwargs):
        for cb in self.callbacks:
            getattr(cb, hook)(**kwargs)
