"""interir-bench pipelines: DVC stages (``stages``), CLI tools (``commands``) and the library they call
(``common``, ``data``, ``engine``, ``reporting``). Stages never import stages or commands."""
