# compare_output.cmake: runs PROG and fails unless its stdout equals the file EXPECTED.
execute_process(COMMAND ${PROG} OUTPUT_VARIABLE out RESULT_VARIABLE rc)
file(READ ${EXPECTED} want)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "${PROG} exited with ${rc}")
endif()
if(NOT out STREQUAL want)
  message(FATAL_ERROR "output of ${PROG}:\n${out}\nexpected:\n${want}")
endif()
