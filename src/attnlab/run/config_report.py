"""Print the composed config as a rich tree at the start of a run."""

from __future__ import annotations

from omegaconf import DictConfig, OmegaConf

from attnlab.utils.rank_zero import rank_zero_only

TREE_INDENT = 8  # the guides before a section's YAML: "│   └── "
ORDER = (
    "data",
    "task",
    "model",
    "init",
    "optimizer",
    "scheduler",
    "trainer",
    "callbacks",
    "logger",
)


@rank_zero_only
def print_config(cfg: DictConfig) -> None:
    """One branch per top-level section, groups first, the remaining keys last."""
    if not cfg.get("print_config", True):
        return
    # Imported here: training itself needs no rich (a bare GPU box may lack it).
    import rich
    import rich.console
    import rich.syntax
    import rich.tree

    tree = rich.tree.Tree("config", style="dim", guide_style="dim")
    sections = [key for key in ORDER if key in cfg] + [key for key in cfg if key not in ORDER]
    texts = []
    for key in sections:
        node = cfg[key]
        text = OmegaConf.to_yaml(node, resolve=True) if isinstance(node, DictConfig) else str(node)
        tree.add(f"[bold]{key}").add(rich.syntax.Syntax(text, "yaml"))
        texts.append(text)
    console = rich.console.Console()
    if not console.is_terminal:  # a log file: rich would cut every line at 80 columns
        widest = max((len(line) for text in texts for line in text.splitlines()), default=0)
        console = rich.console.Console(width=max(console.width, widest + TREE_INDENT))
    console.print(tree)
