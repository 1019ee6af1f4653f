package gormmutex

const helperEnv = "GORMMUTEX_TEST_HELPER"

func helperMain() int { return 0 }
