print("measure beds")
