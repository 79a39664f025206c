"""attnlab's Hydra config tree, shipped inside the package as `attnlab.conf`."""
