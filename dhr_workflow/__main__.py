from dhr_workflow.cli import main

main(prog_name="dhr-workflow")
