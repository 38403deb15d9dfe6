"""Running the pack's workflows without ComfyUI: the runner behind ``run_workflow.py``
(:mod:`.runner`), ComfyUI's workflow files and their UI-to-API conversion (:mod:`.workflow_format`),
and tiny stand-in models for CPU demos (:mod:`.demo_models`). ``nodes/`` never imports this package."""
