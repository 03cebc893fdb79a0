"""`kubectl trainyard`: look into and steer TrainingJobs from the command line.

Installed as the console script `kubectl-trainyard`, which kubectl runs as the plugin
`kubectl trainyard` (docs/cli.md). It talks to the API server with the user's own
kubeconfig and rights, never the operator's. Modules:

    main     argparse: the commands and kubectl's -n, -A, --kubeconfig, --context flags
    kube     kubeconfig loading, the namespace to use, API errors turned into advice
    jobs     the API calls: TrainingJobs, their worker pods, spec patches
    views    pure rendering (rich): the live view, the results table, the job list
    watch    following one job until it finishes (also `make demo`'s screen)
    logs     every worker's log merged in time order, optionally followed
"""
