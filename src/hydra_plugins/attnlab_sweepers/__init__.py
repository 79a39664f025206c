"""attnlab's Hydra plugins. Hydra only instantiates plugins found under `hydra_plugins`."""
