from ingest.service import main

main()
