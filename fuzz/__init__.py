"""Coverage-guided fuzz harnesses (atheris): ``python3 -m fuzz.<harness> -max_total_time=N``."""
