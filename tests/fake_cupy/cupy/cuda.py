"""The bits of cupy.cuda the framework touches."""


class runtime:
    @staticmethod
    def getDeviceCount():
        return 1


class Device:
    def __init__(self, device=0):
        self.id = device

    def use(self):
        return self

    def synchronize(self):
        pass


def get_device_id():
    return 0
