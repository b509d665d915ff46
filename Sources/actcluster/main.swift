import ActClusterCLI
import Platform

LargeAllocation.keepFreedBlocksMapped()
ActCluster.main()
