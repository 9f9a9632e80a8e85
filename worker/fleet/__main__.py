from worker.fleet.main import main

raise SystemExit(main())
