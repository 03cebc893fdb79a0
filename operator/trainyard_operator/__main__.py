"""`python -m trainyard_operator`: the same as the `trainyard-operator` script (`main.main`)."""

from trainyard_operator.main import main

main()
