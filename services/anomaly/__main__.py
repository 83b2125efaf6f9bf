from anomaly.service import main

main()
