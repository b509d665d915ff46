import ActClusterCLI

ActCluster.main()
